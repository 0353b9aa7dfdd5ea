"""``touchlamp device|relay install`` into a temporary root: what it puts where, with which
modes; a second run changes nothing; ``--dry-run`` changes nothing; uninstall removes exactly
what install added."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

from touchlamp.install import (
    InstallError,
    InstallOptions,
    UninstallOptions,
    broker_drop_in_text,
    install,
    main,
    plan_install,
    uninstall,
)

HERE_COMMAND = Path(sysconfig.get_path("scripts")) / "touchlamp"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
Snapshot = dict[str, tuple[str, int, str, int]]


def snapshot(root: Path) -> Snapshot:
    """Every path under ``root``: kind, mode, content hash or link target, and mtime."""
    found: Snapshot = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        if path.is_symlink():
            kind, what = "link", str(path.readlink())
        elif path.is_dir():
            kind, what = "dir", ""
        else:
            kind, what = "file", hashlib.sha256(path.read_bytes()).hexdigest()
        found[str(path.relative_to(root))] = (
            kind,
            stat.S_IMODE(info.st_mode),
            what,
            info.st_mtime_ns,
        )
    return found


def without_times(tree: Snapshot) -> dict[str, tuple[str, int, str]]:
    return {path: (kind, mode, what) for path, (kind, mode, what, _) in tree.items()}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A target system with the folders every Debian has, and things that are not ours."""
    root = tmp_path / "root"
    for folder in ("etc/systemd/system/multi-user.target.wants", "opt", "usr/local/bin", "var/lib"):
        (root / folder).mkdir(parents=True)
    (root / "etc/systemd/system/ssh.service").write_text("[Service]\nExecStart=/bin/true\n")
    (root / "etc/systemd/system/multi-user.target.wants/ssh.service").symlink_to(
        "/etc/systemd/system/ssh.service"
    )
    (root / "usr/local/bin/other-tool").write_text("#!/bin/sh\n")
    # Raspberry Pi OS's groups for the GPIO, I2C and SPI devices (Debian has none of them).
    (root / "etc/group").write_text("root:x:0:\ngpio:x:997:pi\ni2c:x:998:pi\nspi:x:999:pi\n")
    return root


def run_install(root: Path, role: str = "device", *, dry_run: bool = False) -> str:
    out = io.StringIO()
    options = InstallOptions(role=role, root=root, venv=False)  # type: ignore[arg-type]
    assert install(options, dry_run=dry_run, out=out) == 0
    return out.getvalue()


def run_uninstall(root: Path, role: str = "device", *, purge: bool = False) -> str:
    out = io.StringIO()
    options = UninstallOptions(role=role, root=root, purge=purge)  # type: ignore[arg-type]
    assert uninstall(options, dry_run=False, out=out) == 0
    return out.getvalue()


def test_dry_run_prints_every_step_and_changes_nothing(root: Path) -> None:
    before = snapshot(root)
    output = run_install(root, dry_run=True)
    assert snapshot(root) == before
    assert output.splitlines() == [
        f"would create directory {root}/etc/touchlamp (0711)",
        f"would write {root}/etc/touchlamp/device.env (0600)",
        f"would write {root}/etc/systemd/system/touchlamp-device.service (0644)",
        (
            f"would link {root}/etc/systemd/system/multi-user.target.wants/"
            "touchlamp-device.service -> /etc/systemd/system/touchlamp-device.service"
        ),
    ]


def test_install_puts_settings_and_unit_in_place_with_safe_modes(root: Path) -> None:
    output = run_install(root)
    assert "touchlamp-device.service is installed and enabled" in output
    assert "touchlamp device enroll TOKEN" in output
    etc = root / "etc/touchlamp"
    assert stat.S_IMODE(etc.stat().st_mode) == 0o711
    settings = etc / "device.env"
    assert stat.S_IMODE(settings.stat().st_mode) == 0o600
    assert "TOUCHLAMP_DEVICE_LAMP_ID" in settings.read_text()
    unit = root / "etc/systemd/system/touchlamp-device.service"
    assert stat.S_IMODE(unit.stat().st_mode) == 0o644
    assert f"ExecStart={HERE_COMMAND} -v device run --env-file %d/device.env" in unit.read_text()
    wants = root / "etc/systemd/system/multi-user.target.wants/touchlamp-device.service"
    assert wants.readlink() == Path("/etc/systemd/system/touchlamp-device.service")
    # No venv was asked for, so nothing under /opt and no command link.
    assert not any((root / "opt").iterdir())
    assert not (root / "usr/local/bin/touchlamp").exists()


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
def test_the_installed_unit_passes_systemd_analyze_verify(root: Path) -> None:
    run_install(root)
    assert SYSTEMD_ANALYZE is not None
    unit_dir = root / "etc/systemd/system"
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "--man=no", str(unit_dir / "touchlamp-device.service")],
        env={**os.environ, "SYSTEMD_UNIT_PATH": f"{unit_dir}:"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "touchlamp-device" not in result.stdout + result.stderr


def test_a_second_install_changes_nothing(root: Path) -> None:
    run_install(root)
    before = snapshot(root)
    output = run_install(root)
    assert output == "touchlamp-device.service is installed and up to date; nothing to do\n"
    assert snapshot(root) == before
    assert plan_install(InstallOptions(role="device", root=root, venv=False)) == []


def test_reinstalling_keeps_the_settings_but_tightens_their_mode(root: Path) -> None:
    run_install(root)
    settings = root / "etc/touchlamp/device.env"
    settings.write_text("TOUCHLAMP_DEVICE_LAMP_ID=lamp-kitchen\n")
    settings.chmod(0o644)
    output = run_install(root)
    assert output.splitlines()[0] == f"change mode of {settings} from 0644 to 0600"
    assert settings.read_text() == "TOUCHLAMP_DEVICE_LAMP_ID=lamp-kitchen\n"
    assert stat.S_IMODE(settings.stat().st_mode) == 0o600


def test_an_edited_unit_is_put_back(root: Path) -> None:
    run_install(root)
    unit = root / "etc/systemd/system/touchlamp-device.service"
    shipped = unit.read_text()
    unit.write_text(shipped.replace("WatchdogSec=30s", "WatchdogSec=0"))
    output = run_install(root)
    assert output.splitlines()[0] == f"update {unit} (0644)"
    assert unit.read_text() == shipped


def test_uninstall_with_purge_removes_exactly_what_install_added(root: Path) -> None:
    before = without_times(snapshot(root))
    run_install(root)
    output = run_uninstall(root, purge=True)
    assert f"remove {root}/etc/systemd/system/touchlamp-device.service" in output
    # Folders' modification times move when entries come and go; nothing else may differ.
    assert without_times(snapshot(root)) == before


def test_uninstall_keeps_the_settings_unless_purged(root: Path) -> None:
    before = without_times(snapshot(root))
    run_install(root)
    output = run_uninstall(root)
    assert f"kept {root}/etc/touchlamp/device.env" in output
    after = without_times(snapshot(root))
    assert set(after) - set(before) == {"etc/touchlamp", "etc/touchlamp/device.env"}
    assert {path: after[path] for path in before} == before


def test_uninstall_also_removes_the_services_state_when_purged(root: Path) -> None:
    run_install(root)
    # What systemd makes for StateDirectory= with DynamicUser=yes.
    private = root / "var/lib/private/touchlamp"
    private.mkdir(parents=True)
    (private / "outbox.sqlite3").write_text("")
    (root / "var/lib/touchlamp").symlink_to("private/touchlamp")
    run_uninstall(root, purge=True)
    assert not (root / "var/lib/touchlamp").is_symlink()
    assert not private.exists()
    assert (root / "var/lib/private").is_dir()  # systemd's, not ours


def test_uninstalling_what_is_not_installed_does_nothing(root: Path) -> None:
    before = snapshot(root)
    assert run_uninstall(root, purge=True) == (
        "touchlamp-device.service is not installed; nothing to do\n"
    )
    assert snapshot(root) == before


def test_lamp_and_relay_on_one_machine_share_the_settings_folder(root: Path) -> None:
    run_install(root, "device")
    run_install(root, "relay")
    run_uninstall(root, "device", purge=True)
    assert (root / "etc/touchlamp/relay.env").is_file()
    assert (root / "etc/systemd/system/touchlamp-relay.service").is_file()
    assert not (root / "etc/touchlamp/device.env").exists()


def test_a_relay_with_the_broker_beside_it_gets_mosquittos_drop_in(root: Path) -> None:
    (root / "etc/systemd/system/mosquitto.service.d").mkdir()
    (root / "etc/systemd/system/mosquitto.service.d/local.conf").write_text("[Service]\n")
    before = without_times(snapshot(root))
    options = InstallOptions(role="relay", root=root, venv=False, with_broker=True)
    assert install(options, dry_run=False, out=io.StringIO()) == 0
    drop_in = root / "etc/systemd/system/mosquitto.service.d/touchlamp.conf"
    assert drop_in.read_text() == broker_drop_in_text()
    assert stat.S_IMODE(drop_in.stat().st_mode) == 0o644
    assert plan_install(options) == []
    run_uninstall(root, "relay", purge=True)
    assert without_times(snapshot(root)) == before  # the operator's own drop-in stays


def test_the_broker_drop_in_goes_with_the_relay_only(root: Path) -> None:
    with pytest.raises(InstallError, match="--with-broker goes with the relay"):
        plan_install(InstallOptions(role="device", root=root, venv=False, with_broker=True))


def test_the_command_line_installs_and_reports_bad_sources(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["device", "install", "--root", str(root), "--no-venv", "--dry-run"]) == 0
    assert "would write" in capsys.readouterr().out
    not_touchlamp = root / "elsewhere"
    not_touchlamp.mkdir()
    assert main(["relay", "install", "--root", str(root), "--from", str(not_touchlamp)]) == 1
    error = capsys.readouterr().err
    assert f"--from {not_touchlamp}: expected a touchlamp wheel" in error


def test_python_dash_m_runs_the_installer(root: Path) -> None:
    """``python -m touchlamp.install`` is the way in where only the package is at hand; it must
    survive the installer being a package rather than one module."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "touchlamp.install",
            "relay",
            "install",
            "--root",
            str(root),
            "--no-venv",
            "--dry-run",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"would write {root}/etc/systemd/system/touchlamp-relay.service" in result.stdout
    assert not (root / "etc/systemd/system/touchlamp-relay.service").exists()


def test_no_venv_needs_a_touchlamp_command(root: Path) -> None:
    options = InstallOptions(role="device", root=root, venv=False, command=root / "missing")
    with pytest.raises(InstallError, match="no touchlamp command at"):
        plan_install(options)


# ---- a real virtual environment (offline: a wheel built here, no dependencies fetched) ----


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A touchlamp wheel built from a copy of this checkout (so no build files land in it)."""
    checkout = Path(__file__).resolve().parents[2]
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(checkout / name, source / name)
    # Every folder pyproject.toml maps into the touchlamp namespace (a new one is copied too).
    package_dirs = tomllib.loads((checkout / "pyproject.toml").read_text())["tool"]["setuptools"]
    for folder in sorted(set(package_dirs["package-dir"].values())):
        shutil.copytree(
            checkout / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "--wheel-dir",
            str(out),
            str(source),
        ],
        check=True,
    )
    (built,) = out.glob("touchlamp-*.whl")
    return built


@pytest.mark.slow
def test_a_real_venv_is_created_once_and_shared_by_lamp_and_relay(root: Path, wheel: Path) -> None:
    def options(role: str) -> InstallOptions:
        return InstallOptions(
            role=role,  # type: ignore[arg-type]
            root=root,
            source=wheel,
            pip_options=("--no-index", "--no-deps"),
        )

    out = io.StringIO()
    assert install(options("device"), dry_run=False, out=out) == 0
    venv = root / "opt/touchlamp/venv"
    assert "include-system-site-packages = true" in (venv / "pyvenv.cfg").read_text()
    assert (venv / "bin/touchlamp").is_file()
    version = wheel.name.split("-")[1]
    (info,) = venv.glob("lib/python3*/site-packages/touchlamp-*.dist-info")
    assert f"Version: {version}" in (info / "METADATA").read_text()
    assert (root / "usr/local/bin/touchlamp").readlink() == Path(
        "/opt/touchlamp/venv/bin/touchlamp"
    )
    unit = (root / "etc/systemd/system/touchlamp-device.service").read_text()
    assert "ExecStart=/opt/touchlamp/venv/bin/touchlamp -v device run" in unit

    # The relay finds the venv with the same version: no second venv, no pip.
    relay_steps = [step.describe() for step in plan_install(options("relay"))]
    assert not any(
        line.startswith(("create virtual environment", "pip install")) for line in relay_steps
    ), relay_steps
    assert install(options("relay"), dry_run=False, out=io.StringIO()) == 0
    assert plan_install(options("device")) == []

    run_uninstall(root, "device", purge=True)
    assert venv.is_dir()  # the relay still runs from it
    run_uninstall(root, "relay", purge=True)
    assert not (root / "opt/touchlamp").exists()
    assert (root / "opt").is_dir()
    assert not (root / "usr/local/bin/touchlamp").exists()
    assert (root / "usr/local/bin/other-tool").exists()


def test_a_lamps_commands_do_not_load_the_installer_until_it_runs() -> None:
    """Every ``touchlamp device …`` builds the parser with ``install``; a running lamp must not
    carry the installer's imports (its memory is measured: BENCHMARKS.md)."""
    probe = (
        "import argparse, sys\n"
        "from touchlamp.device.cli import register\n"
        "register(argparse.ArgumentParser().add_subparsers())\n"
        "print('touchlamp.install' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_a_lamp_on_a_system_without_the_device_groups_is_told_what_to_do(root: Path) -> None:
    """Debian has no gpio/i2c/spi groups, and systemd refuses to start a unit whose
    SupplementaryGroups= names a group that does not exist."""
    (root / "etc/group").write_text("root:x:0:\ni2c:x:998:\n")
    advice = [
        (
            "warning: this system has no group gpio, spi: systemd will not start "
            "touchlamp-device.service,"
        ),
        "  which runs in groups gpio i2c spi (the owners of the GPIO, I2C and SPI devices).",
        "  On a Raspberry Pi, install Raspberry Pi OS (it has them). Elsewhere create them:",
        "    sudo groupadd --system gpio && sudo groupadd --system spi",
        "  and give each its devices with a udev rule (DEPLOY.md, 'Not on Raspberry Pi OS').",
    ]
    assert run_install(root, dry_run=True).splitlines()[-5:] == advice
    assert run_install(root).splitlines()[-5:] == advice
    assert run_install(root).splitlines() == [
        "touchlamp-device.service is installed and up to date; nothing to do",
        "",
        *advice,
    ]
    # A relay needs no device groups.
    assert "warning" not in run_install(root, "relay")


def test_a_lamp_on_64_bit_arm_gets_lgpio_from_its_wheel(root: Path) -> None:
    source = Path(__file__).resolve().parents[2]

    def pip_steps(role: str, machine: str) -> list[str]:
        options = InstallOptions(
            role=role,  # type: ignore[arg-type]
            root=root,
            source=source,
            machine=machine,
        )
        return [
            step.describe()
            for step in plan_install(options)
            if step.describe().startswith("pip install")
        ]

    venv = root / "opt/touchlamp/venv"
    assert pip_steps("device", "aarch64") == [f"pip install {source}[pi] into {venv}"]
    # No wheel for 32-bit ARM or a PC: the venv sees the system's python3-lgpio instead.
    assert pip_steps("device", "armv7l") == [f"pip install {source} into {venv}"]
    assert pip_steps("relay", "aarch64") == [f"pip install {source} into {venv}"]
