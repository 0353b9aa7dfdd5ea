"""``touchlamp broker …`` as a user runs it: exit codes, output, and Mosquitto's own clients."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.broker import BrokerFixture, MqttProbe
from tests.support.ports import free_port
from tests.support.waiting import WAIT, wait_until
from touchlamp.cli import main
from touchlamp.protocol.topics import Topics

TOUCHLAMP = [sys.executable, "-m", "touchlamp"]
needs_clients = pytest.mark.skipif(
    shutil.which("mosquitto_pub") is None or shutil.which("mosquitto_sub") is None,
    reason="needs Debian's mosquitto-clients",
)

# Debian bookworm's stock /etc/mosquitto/mosquitto.conf (mosquitto 2.0.11-1.2+deb12u2),
# verbatim: the file touchlamp.conf must coexist with.
DEBIAN_MAIN_CONF = """\
# Place your local configuration in /etc/mosquitto/conf.d/
#
# A full description of the configuration file is at
# /usr/share/doc/mosquitto/examples/mosquitto.conf.example

pid_file /run/mosquitto/mosquitto.pid

persistence true
persistence_location /var/lib/mosquitto/

log_dest file /var/log/mosquitto/mosquitto.log

include_dir /etc/mosquitto/conf.d
"""


def _touchlamp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TOUCHLAMP, *args], capture_output=True, text=True, timeout=60, check=False
    )


# -- broker run ------------------------------------------------------------------------------


@dataclass
class Running:
    process: subprocess.Popen[str]
    port: int
    state: Path
    mosquitto_pid: int
    banner: str


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    """``touchlamp broker run`` in the foreground, once it has said where it listens."""
    port, state = free_port(), tmp_path / "state"
    process = subprocess.Popen(
        [*TOUCHLAMP, "broker", "run", "--port", str(port), "--state-dir", str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = []
        # Blocks until it has printed where it listens (the banner ends with the lamp hint).
        for line in process.stdout:
            banner.append(line)
            if "add a lamp:" in line:
                break
        text = "".join(banner)
        found = re.search(r"mosquitto \(pid (\d+)\) is running", text)
        assert found, f"unexpected output {text!r}"
        yield Running(process, port, state, int(found.group(1)), text)
    finally:
        # SIGTERM, not SIGKILL: killed, `broker run` could not stop its Mosquitto, which runs
        # in a session of its own so that a terminal's Ctrl-C reaches only `broker run`.
        if process.poll() is None:
            process.terminate()
        process.communicate(timeout=WAIT)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_broker_run_serves_until_a_signal_then_exits_0(
    running: Running, stop_signal: signal.Signals
) -> None:
    assert f"mqtt://127.0.0.1:{running.port}" in running.banner
    assert str(running.state / "credentials" / "admin.password") in running.banner
    assert str(running.state / "credentials" / "relay.password") in running.banner
    assert Path(f"/proc/{running.mosquitto_pid}").exists()

    running.process.send_signal(stop_signal)
    out, err = running.process.communicate(timeout=WAIT)

    assert running.process.returncode == 0, err
    assert out.rstrip().endswith("touchlamp: broker stopped")
    assert not Path(f"/proc/{running.mosquitto_pid}").exists()


@needs_clients
def test_mosquittos_own_clients_work_with_credentials_from_touchlamp(running: Running) -> None:
    port, state = running.port, running.state
    added = _touchlamp(
        "broker", "lamp", "add", "lamp-a", "--state-dir", str(state), "--port", str(port)
    )
    assert added.returncode == 0, added.stderr
    lamp_password = added.stdout.strip()
    relay_password = (state / "credentials" / "relay.password").read_text(encoding="utf-8").strip()
    topics = Topics()
    common = ["-h", "127.0.0.1", "-p", str(port), "-V", "mqttv5", "-q", "1"]

    # The relay publishes the lamp's (retained) group state; the lamp reads it.
    subprocess.run(
        ["mosquitto_pub", *common, "-u", "relay", "-i", "touchlamp-relay", "-P", relay_password,
         "-r", "-t", topics.group("lamp-a"), "-m", '{"members": []}'],
        check=True, timeout=WAIT,
    )  # fmt: skip
    got = subprocess.run(
        ["mosquitto_sub", *common, "-u", "lamp-a", "-i", "lamp-a", "-P", lamp_password,
         "-t", topics.group("lamp-a"), "-C", "1", "-W", "10"],
        capture_output=True, text=True, check=True, timeout=WAIT,
    )  # fmt: skip
    assert got.stdout.strip() == '{"members": []}'

    # A lamp may not read another's topic: mosquitto_sub is refused and gets nothing.
    refused = subprocess.run(
        ["mosquitto_sub", *common, "-u", "lamp-a", "-i", "lamp-a", "-P", lamp_password,
         "-t", topics.group("lamp-b"), "-C", "1", "-W", "2"],
        capture_output=True, text=True, check=False, timeout=WAIT,
    )  # fmt: skip
    assert "All subscription requests were denied" in refused.stderr
    assert not refused.stdout


def test_a_busy_port_fails_with_exit_1_and_says_why(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _touchlamp(
            "broker", "run", "--port", str(port), "--state-dir", str(tmp_path / "s")
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_a_bad_setting_exits_2(tmp_path: Path) -> None:
    result = _touchlamp("broker", "run", "--port", "70000", "--state-dir", str(tmp_path))
    assert result.returncode == 2
    assert "port" in result.stderr


# -- broker lamp ------------------------------------------------------------------------------


def _lamp_cli(broker: BrokerFixture, *args: str) -> list[str]:
    state, port = str(broker.managed.layout.root), str(broker.port)
    return ["broker", "lamp", *args, "--state-dir", state, "--port", port]


def test_lamp_add_prints_the_password_once_and_it_works(
    broker: BrokerFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_lamp_cli(broker, "add", "lamp-a")) == 0
    out, err = capsys.readouterr()
    password = out.strip()
    assert "not shown again" in err
    broker.connect_lamp("lamp-a", password=password)

    assert main(_lamp_cli(broker, "list")) == 0
    assert capsys.readouterr().out.splitlines() == ["lamp-a"]
    assert password not in capsys.readouterr().out


def test_relay_add_makes_a_login_bound_to_its_name_and_remove_drops_it(
    broker: BrokerFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    state, port = str(broker.managed.layout.root), str(broker.port)
    where = ["--state-dir", state, "--port", port]
    assert main(["broker", "relay", "add", "relay-2", *where]) == 0
    out, err = capsys.readouterr()
    password = out.strip()
    assert "not shown again" in err
    live = broker.connect_relay("relay-2", password)  # client id relay-2
    elsewhere = broker.probe(username="relay-2", password=password, client_id="lamp-a")
    assert str(elsewhere.connect()) == "Not authorized"

    assert main(["broker", "relay", "remove", "relay-2", *where]) == 0
    assert str(live.wait_disconnected()) == "Administrative action"
    assert main(["broker", "relay", "remove", "relay-2", *where]) == 1
    assert "'relay-2' is not a relay user" in capsys.readouterr().err


def test_lamp_add_with_several_ids_prints_one_line_per_lamp(
    broker: BrokerFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_lamp_cli(broker, "add", "lamp-a", "lamp-b")) == 0
    out, err = capsys.readouterr()
    assert "2 lamps added" in err
    lines = dict(line.split("\t") for line in out.splitlines())
    assert sorted(lines) == ["lamp-a", "lamp-b"]
    broker.connect_lamp("lamp-b", password=lines["lamp-b"])


def test_lamp_remove_revokes_and_disconnects(
    broker: BrokerFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    lamp = broker.connect_lamp("lamp-a")

    assert main(_lamp_cli(broker, "remove", "lamp-a")) == 0

    assert str(lamp.wait_disconnected()) == "Administrative action"
    assert "removed" in capsys.readouterr().out
    assert main(_lamp_cli(broker, "list")) == 0
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("remove", "ghost"), "no lamp 'ghost'"),
        (("add", "Not_A_Lamp"), "not a lamp id"),
    ],
)
def test_lamp_commands_fail_with_exit_1_and_a_reason(
    broker: BrokerFixture,
    capsys: pytest.CaptureFixture[str],
    args: tuple[str, ...],
    message: str,
) -> None:
    assert main(_lamp_cli(broker, *args)) == 1
    assert message in capsys.readouterr().err


def test_lamp_commands_without_a_state_dir_say_where_they_looked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "nothing-here"
    assert main(["broker", "lamp", "list", "--state-dir", str(state), "--port", "1"]) == 1
    assert str(state / "credentials" / "admin.password") in capsys.readouterr().err


# -- broker config ----------------------------------------------------------------------------


def test_config_writes_commented_files_and_private_credentials(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = _touchlamp("broker", "config", "--out", str(out), "--port", "1884")
    assert result.returncode == 0, result.stderr

    conf = (out / "touchlamp.conf").read_text(encoding="utf-8")
    assert conf.startswith("# touchlamp's Mosquitto drop-in")
    assert "\nlistener 1884 127.0.0.1\n" in conf
    dynsec = (out / "touchlamp-dynamic-security.json").read_text(encoding="utf-8")
    assert dynsec.startswith('{\n  "README": "touchlamp\'s Mosquitto drop-in')
    for name in ("admin.password", "relay.password"):
        secret = out / "credentials" / name
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
        assert secret.read_text(encoding="utf-8").strip() not in dynsec

    before = (out / "credentials" / "admin.password").read_text(encoding="utf-8")
    again = _touchlamp("broker", "config", "--out", str(out), "--port", "1884")
    assert again.returncode == 0
    assert (out / "credentials" / "admin.password").read_text(encoding="utf-8") == before


@pytest.fixture
def mosquitto_dir() -> Iterator[Path]:
    """A directory Debian's ``mosquitto`` user can reach (pytest's temp dirs are root-only)."""
    with tempfile.TemporaryDirectory(prefix="touchlamp-debian-") as name:
        path = Path(name)
        if os.geteuid() == 0:
            account = pwd.getpwnam("mosquitto")
            os.chown(path, account.pw_uid, account.pw_gid)
        yield path


def test_the_drop_in_coexists_with_debians_stock_main_config(
    tmp_path: Path, mosquitto_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, port = tmp_path / "out", free_port()
    installed_store = mosquitto_dir / "touchlamp-dynamic-security.json"
    assert main(["broker", "config", "--out", str(out), "--port", str(port),
                 "--dynsec-file", str(installed_store)]) == 0  # fmt: skip
    # What the drop-in's README says an operator does, with this test's directories:
    shutil.copy(out / "touchlamp-dynamic-security.json", installed_store)
    if os.geteuid() == 0:
        account = pwd.getpwnam("mosquitto")
        os.chown(installed_store, account.pw_uid, account.pw_gid)
    main_conf = tmp_path / "mosquitto.conf"
    main_conf.write_text(
        DEBIAN_MAIN_CONF.replace("/run/mosquitto/mosquitto.pid", f"{mosquitto_dir}/mosquitto.pid")
        .replace("/var/lib/mosquitto/", f"{mosquitto_dir}/")
        .replace("/var/log/mosquitto/mosquitto.log", f"{mosquitto_dir}/mosquitto.log")
        .replace("/etc/mosquitto/conf.d", str(out)),
        encoding="utf-8",
    )
    log = mosquitto_dir / "mosquitto.log"
    process = subprocess.Popen(["/usr/sbin/mosquitto", "-c", str(main_conf)])
    try:
        wait_until(
            lambda: (
                process.poll() is not None or (log.exists() and b" running" in log.read_bytes())
            ),
            what="mosquitto to start",
        )
        assert process.poll() is None, log.read_text(encoding="utf-8")

        argv = ["broker", "lamp", "add", "lamp-a", "--state-dir", str(out), "--port", str(port)]
        capsys.readouterr()
        assert main(argv) == 0, capsys.readouterr().err
        password = capsys.readouterr().out.strip()
        lamp = MqttProbe(
            host="127.0.0.1", port=port, username="lamp-a", password=password, client_id="lamp-a"
        )
        anonymous = MqttProbe(
            host="127.0.0.1", port=port, username=None, password=None, client_id="anonymous"
        )
        try:
            assert not lamp.connect().is_failure
            assert str(lamp.subscribe("#")) == "Not authorized"
            assert anonymous.connect().is_failure
        finally:
            lamp.close()
            anonymous.close()
        text = log.read_text(encoding="utf-8")
        assert "Error" not in text
        assert f"Opening ipv4 listen socket on port {port}" in text
    finally:
        process.terminate()
        process.wait(WAIT)
