"""``ManagedBroker``: state dir reuse, file ownership, clear start-up errors, TLS, websockets."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.broker import BrokerFixture, MqttProbe, start_managed_broker
from tests.support.ports import free_port
from touchlamp.broker.certs import make_certificates
from touchlamp.broker.errors import BrokerStartError, BrokerStateError
from touchlamp.broker.launcher import ManagedBroker
from touchlamp.config.broker import (
    BrokerSettings,
    ListenerSettings,
    TlsSettings,
    WebsocketsSettings,
)

IS_ROOT = os.geteuid() == 0


def _settings(state_dir: Path, **extra: object) -> BrokerSettings:
    return BrokerSettings(
        state_dir=state_dir,
        listeners=[ListenerSettings(port=free_port())],
        **extra,  # type: ignore[arg-type]
    )


def test_a_restart_on_the_same_state_dir_keeps_credentials_and_lamps(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = start_managed_broker(state)
    try:
        credentials = first.credentials
        with first.admin() as admin:
            lamp_password = admin.add_lamp("lamp-a")
    finally:
        first.stop()

    second = start_managed_broker(state)
    try:
        assert second.credentials == credentials
        with second.admin() as admin:
            assert admin.list_lamps() == ["lamp-a"]
        lamp = MqttProbe(
            host=second.host,
            port=second.port,
            username="lamp-a",
            password=lamp_password,
            client_id="lamp-a",
        )
        assert not lamp.connect().is_failure
        lamp.close()
    finally:
        second.stop()


def test_secrets_are_private_and_the_broker_side_holds_no_plaintext(broker: BrokerFixture) -> None:
    layout = broker.managed.layout
    for secret in (layout.admin_password_file, layout.relay_password_file):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(layout.credentials_dir.stat().st_mode) == 0o700
    dynsec = layout.dynsec_file.read_text(encoding="utf-8")
    lamp_password = broker.add_lamp("lamp-a")
    for plaintext in (broker.relay_password, broker.managed.credentials.admin_password):
        assert plaintext not in dynsec
    assert lamp_password not in layout.dynsec_file.read_text(encoding="utf-8")


@pytest.mark.skipif(not IS_ROOT, reason="privilege drop happens only when started as root")
def test_as_root_mosquitto_runs_as_its_own_user_from_a_dir_it_could_not_reach(
    tmp_path: Path,
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)  # the mosquitto user may not even enter this directory
    managed = start_managed_broker(locked / "state")
    try:
        account = pwd.getpwnam("mosquitto")
        status = Path(f"/proc/{managed.pid}/status").read_text(encoding="utf-8")
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        assert uid_line.split()[1:] == [str(account.pw_uid)] * 4
        data = managed.layout.data_dir
        assert data.stat().st_uid == account.pw_uid
        assert managed.layout.admin_password_file.stat().st_uid == 0
        with managed.admin() as admin:
            admin.add_lamp("lamp-a")  # the plugin could save its file
        assert b"lamp-a" in managed.layout.dynsec_file.read_bytes()
    finally:
        managed.stop()


def test_a_state_dir_made_for_another_topic_root_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    start_managed_broker(state, topic_root="test/one").stop()

    with pytest.raises(BrokerStateError, match="another topic root than 'test/two'"):
        ManagedBroker(_settings(state, topic_root="test/two")).start()


def test_a_store_without_its_credentials_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    start_managed_broker(state).stop()
    (state / "credentials" / "admin.password").unlink()

    with pytest.raises(BrokerStateError, match="passwords are unknown"):
        ManagedBroker(_settings(state)).start()


def test_a_busy_port_is_reported_before_starting(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = BrokerSettings(
            state_dir=tmp_path / "state", listeners=[ListenerSettings(port=port)]
        )
        with pytest.raises(BrokerStartError, match=f"cannot listen on 127.0.0.1:{port}"):
            ManagedBroker(settings).start()


def test_a_missing_mosquitto_names_the_setting(tmp_path: Path) -> None:
    settings = _settings(tmp_path / "state", mosquitto_path=tmp_path / "nope")
    with pytest.raises(BrokerStartError, match="TOUCHLAMP_BROKER_MOSQUITTO_PATH"):
        ManagedBroker(settings).start()


def test_a_corrupt_store_is_refused_before_starting(tmp_path: Path) -> None:
    state = tmp_path / "state"
    start_managed_broker(state).stop()
    dynsec = state / "data" / "dynamic-security.json"
    owner = dynsec.stat()
    dynsec.write_text('{"roles": [{"rolename": "touchlamp-relay"', encoding="utf-8")
    os.chown(dynsec, owner.st_uid, owner.st_gid)

    with pytest.raises(BrokerStateError, match="cannot read"):
        ManagedBroker(_settings(state)).start()


def test_mosquitto_exiting_at_start_shows_its_log(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path / "state",
        plugin_path=Path("/bin/true"),  # exists, but is no plugin
    )
    with pytest.raises(BrokerStartError, match=r"(?s)exited with code .*plugin"):
        ManagedBroker(settings).start()


def test_stop_ends_the_process(broker: BrokerFixture) -> None:
    pid = broker.managed.pid
    assert pid is not None
    broker.managed.stop()
    assert not broker.managed.running
    assert not Path(f"/proc/{pid}").exists()


_PARENT_SCRIPT = """
import sys, time
from pathlib import Path
from touchlamp.broker.launcher import ManagedBroker
from touchlamp.config.broker import BrokerSettings, ListenerSettings
broker = ManagedBroker(
    BrokerSettings(
        state_dir=Path(sys.argv[1]),
        # As root, Mosquitto switches to its own user (run_as_user), which clears a
        # parent-death signal (prctl(2)): the watcher must stop it all the same.
        listeners=[ListenerSettings(port=int(sys.argv[2]))],
    ),
    stop_with_parent=sys.argv[3] == "yes",
)
broker.start()
print(broker.pid, flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("stop_with_parent", [True, False], ids=["stop-with-parent", "default"])
def test_a_parent_killed_with_sigkill_takes_its_broker_along_only_if_asked(
    tmp_path: Path, stop_with_parent: bool
) -> None:
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _PARENT_SCRIPT,
            str(tmp_path / "state"),
            str(free_port()),
            "yes" if stop_with_parent else "no",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    with parent.stdout:
        mosquitto = int(parent.stdout.readline())
    try:
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + (10 if stop_with_parent else 1)
        while _alive(mosquitto) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _alive(mosquitto) is not stop_with_parent
    finally:
        if _alive(mosquitto):
            os.kill(mosquitto, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (our grandchild: once it exits, init reaps it and the pid is gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in {"Z", "X"}


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_a_lamp_connects_over_tls(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    tls_port = free_port()
    managed = start_managed_broker(
        tmp_path / "state",
        tls=TlsSettings(
            enabled=True, address="127.0.0.1", port=tls_port, certfile=cert, keyfile=key
        ),
    )
    try:
        with managed.admin() as admin:
            password = admin.add_lamp("lamp-a")
        lamp = MqttProbe(
            host="127.0.0.1",
            port=tls_port,
            username="lamp-a",
            password=password,
            client_id="lamp-a",
            tls_ca=str(cert),
        )
        assert not lamp.connect().is_failure
        assert not lamp.publish(managed.topics.touch("lamp-a"), b"over tls").is_failure
        lamp.close()
    finally:
        managed.stop()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_a_lamp_connects_over_websockets(tmp_path: Path) -> None:
    # Only wss: Mosquitto 2.0.11 binds websockets to every interface (BrokerSettings refuses ws).
    certificates = make_certificates(tmp_path / "certs", hosts=["localhost"])
    ws_port = free_port()
    managed = start_managed_broker(
        tmp_path / "state",
        tls=TlsSettings(
            enabled=True,
            address="127.0.0.1",
            port=free_port(),
            certfile=certificates.certificate,
            keyfile=certificates.key,
        ),
        websockets=WebsocketsSettings(enabled=True, port=ws_port, tls=True),
    )
    try:
        with managed.admin() as admin:
            password = admin.add_lamp("lamp-a")
        lamp = MqttProbe(
            host="localhost",
            port=ws_port,
            username="lamp-a",
            password=password,
            client_id="lamp-a",
            transport="websockets",
            tls_ca=str(certificates.ca_certificate),
        )
        assert not lamp.connect().is_failure
        assert str(lamp.subscribe("#")) == "Not authorized"
        lamp.close()
    finally:
        managed.stop()
