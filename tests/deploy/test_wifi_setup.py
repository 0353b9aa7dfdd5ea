"""``touchlamp device install --wifi-setup`` into a temporary root: Debian's comitup configured
for a lamp given as a gift (its hotspot ``touchlamp-NNNN``). Wi-Fi itself cannot be tested
here; what the installer writes can (DEPLOY.md "Give a lamp")."""

from __future__ import annotations

import io
import stat
from pathlib import Path

import pytest

from touchlamp.install import (
    InstallError,
    InstallOptions,
    comitup_conf_text,
    install,
    main,
    plan_install,
)

# What Debian's comitup package ships: everything commented out.
PACKAGED_CONF = "# ap_name: comitup-<nnn>\n# web_service: httpd.service\n"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    for folder in ("etc/systemd/system/multi-user.target.wants", "opt", "var/lib"):
        (root / folder).mkdir(parents=True)
    (root / "etc/group").write_text("root:x:0:\ngpio:x:997:pi\ni2c:x:998:pi\nspi:x:999:pi\n")
    return root


def _with_comitup(root: Path) -> None:
    (root / "usr/sbin").mkdir(parents=True)
    (root / "usr/sbin/comitup").write_text("#!/usr/bin/python3\n")
    (root / "etc/comitup.conf").write_text(PACKAGED_CONF)


def _install(root: Path) -> str:
    out = io.StringIO()
    options = InstallOptions(role="device", root=root, venv=False, wifi_setup=True)
    assert install(options, dry_run=False, out=out) == 0
    return out.getvalue()


def test_the_hotspot_is_named_touchlamp_nnnn_and_a_second_install_changes_nothing(
    root: Path,
) -> None:
    _with_comitup(root)

    output = _install(root)

    conf = root / "etc/comitup.conf"
    assert conf.read_text() == comitup_conf_text()
    assert "ap_name: touchlamp-<nnnn>\n" in conf.read_text()
    assert stat.S_IMODE(conf.stat().st_mode) == 0o644
    assert f"{root}/etc/comitup.conf" in output
    assert "apt-get" not in output  # comitup is there already
    assert (root / "etc/systemd/system/touchlamp-device.service").is_file()
    assert plan_install(InstallOptions(role="device", root=root, venv=False, wifi_setup=True)) == []


def test_an_image_being_prepared_is_told_to_install_comitup_itself(root: Path) -> None:
    # Not the running system: the installer must not run apt-get for it (that would change
    # the machine running the install), it says what to do instead.
    output = _install(root)

    assert "not installing Debian's comitup package" in output
    assert "apt-get install comitup" in output
    assert (root / "etc/comitup.conf").read_text() == comitup_conf_text()


def test_the_wifi_setup_goes_with_a_lamp_only(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(InstallError, match="--wifi-setup goes with a lamp"):
        plan_install(InstallOptions(role="relay", root=root, venv=False, wifi_setup=True))
    with pytest.raises(SystemExit) as exit_code:
        main(["relay", "install", "--root", str(root), "--no-venv", "--wifi-setup"])
    assert exit_code.value.code == 2
    assert "--wifi-setup" in capsys.readouterr().err


def test_the_command_line_writes_it(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _with_comitup(root)
    args = ["device", "install", "--root", str(root), "--no-venv", "--wifi-setup"]
    assert main([*args, "--dry-run"]) == 0
    assert f"would update {root}/etc/comitup.conf (0644)" in capsys.readouterr().out
    assert (root / "etc/comitup.conf").read_text() == PACKAGED_CONF
    assert main(args) == 0
    assert (root / "etc/comitup.conf").read_text() == comitup_conf_text()
