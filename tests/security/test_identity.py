"""Who may log in, as whom, and what is kept of their secrets — against the real broker and relay.

Identity is lamp id = MQTT username = client id, tied together by the broker (each lamp's
dynamic-security client is bound to its client id), so a login can neither be guessed nor used
to push another lamp off the broker. Every test ends with the legitimate pair still exchanging
touches.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from tests.security.world import SecureWorld
from tests.support.raw_mqtt import RawClient, connect_packet
from tests.support.waiting import wait_until
from touchlamp.broker.passwords import PASSWORD_BITS, generate_password
from touchlamp.cli import main

_NOT_AUTHORISED = 5  # MQTT 3.1.1 CONNACK return code


def _relay(world: SecureWorld, *args: str) -> int:
    return main(["relay", *args, "--env-file", str(world.relay_env_file())])


def _add_lamp(world: SecureWorld, lamp_id: str, capsys: pytest.CaptureFixture[str]) -> str:
    """`touchlamp relay lamp add ID --json`, as the operator runs it; the lamp's password."""
    capsys.readouterr()
    assert _relay(world, "lamp", "add", lamp_id, "--json") == 0
    password: str = json.loads(capsys.readouterr().out)["password"]
    return password


def test_anonymous_clients_are_refused(world: SecureWorld) -> None:
    stranger = world.broker.probe(username=None, password=None)
    assert str(stranger.connect()) == "Not authorized"
    # MQTT 3.1.1 too, and with a lamp's client id: refused, and lamp-a is not pushed off.
    with RawClient(world.broker.host, world.broker.port) as raw:
        raw.send(connect_packet(client_id=b"lamp-a", username=None, password=None))
        assert raw.connack() == _NOT_AUTHORISED
        assert raw.closed()
    assert world.a.connected
    world.exchange()


def test_wrong_passwords_are_refused_and_do_not_push_the_lamp_off(world: SecureWorld) -> None:
    for attempt in range(200):
        with RawClient(world.broker.host, world.broker.port) as raw:
            guess = b"%d" % attempt
            raw.send(connect_packet(client_id=b"lamp-a", username=b"lamp-a", password=guess))
            assert raw.connack() == _NOT_AUTHORISED
        if attempt % 50 == 0:
            world.exchange()  # during the attack
    for username in ("lamp-a", world.broker.relay_username, "admin"):
        impostor = world.broker.probe(username=username, password="guessed", client_id=username)
        assert impostor.connect().is_failure
    assert world.a.connected
    world.exchange()


def test_a_lamps_client_id_cannot_be_taken_over(world: SecureWorld) -> None:
    password_c = world.broker.add_lamp("lamp-c")
    # lamp-c's valid login may not use lamp-a's client id (which would push lamp-a off) ...
    takeover = world.broker.probe(username="lamp-c", password=password_c, client_id="lamp-a")
    assert str(takeover.connect()) == "Not authorized"
    # ... nor any client id but its own.
    elsewhere = world.broker.probe(username="lamp-c", password=password_c, client_id="lamp-c2")
    assert str(elsewhere.connect()) == "Not authorized"
    assert world.a.connected
    world.exchange()


def test_the_relays_login_cannot_push_a_lamp_off(world: SecureWorld) -> None:
    # The installed relay login, and one added for a second relay process, are each bound to
    # their own name as client id, as a lamp's login is.
    second = world.broker.admin.add_relay("relay-2")
    for username, password in (
        (world.broker.relay_username, world.broker.relay_password),
        ("relay-2", second),
    ):
        for client_id in ("lamp-a", "lamp-b"):
            takeover = world.broker.probe(username=username, password=password, client_id=client_id)
            assert str(takeover.connect()) == "Not authorized", (username, client_id)
    assert world.a.connected
    assert world.b.connected
    world.exchange()


def test_relay_lamp_remove_drops_the_live_connection_at_once(
    world: SecureWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    password = _add_lamp(world, "lamp-stolen", capsys)
    stolen = world.broker.probe(username="lamp-stolen", password=password, client_id="lamp-stolen")
    assert not stolen.connect().is_failure
    world.exchange()

    assert _relay(world, "lamp", "remove", "lamp-stolen") == 0

    # Dropped now, by the broker ("administrative action"), not at its next login.
    assert str(stolen.wait_disconnected()) == "Administrative action"
    assert stolen.connect().is_failure
    assert world.store.get_lamp("lamp-stolen") is None
    world.exchange()


def test_passwords_are_random_with_at_least_128_bits(
    world: SecureWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    assert PASSWORD_BITS >= 128
    passwords = [_add_lamp(world, f"lamp-{n}", capsys) for n in range(5)]
    drawn = [generate_password() for _ in range(1000)] + passwords
    assert len(set(drawn)) == len(drawn)
    for password in drawn:
        raw = base64.urlsafe_b64decode(password + "=" * (-len(password) % 4))
        assert len(raw) * 8 >= 128, password
    world.exchange()


def test_the_broker_stores_passwords_only_hashed(
    world: SecureWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    lamp_passwords = {f"lamp-h{n}": _add_lamp(world, f"lamp-h{n}", capsys) for n in range(3)}
    layout = world.broker.managed.layout
    credentials = world.broker.managed.credentials
    secrets = [*lamp_passwords.values(), credentials.admin_password, credentials.relay_password]
    dynsec = layout.dynsec_file

    def saved() -> dict[str, dict[str, object]]:
        document = json.loads(dynsec.read_text(encoding="utf-8"))
        return {client["username"]: client for client in document["clients"]}

    wait_until(lambda: set(lamp_passwords) <= set(saved()), what="the plugin to save the lamps")
    text = dynsec.read_text(encoding="utf-8")
    for secret in secrets:
        assert secret not in text
    for username, client in saved().items():
        # PBKDF2-HMAC-SHA512: a 64-byte hash, its own salt, an iteration count.
        assert len(base64.b64decode(str(client["password"]))) == 64, username
        assert base64.b64decode(str(client["salt"])), username
        assert int(str(client["iterations"])) > 0, username
    # Nor does any other file the broker or the relay keep hold a lamp's password.
    kept = [layout.log_file, layout.config_file, *world.relay_state.iterdir()]
    for path in kept:
        content = path.read_bytes()
        for password in lamp_passwords.values():
            assert password.encode() not in content, path
    world.exchange()


def test_secret_files_are_readable_by_their_owner_only(world: SecureWorld) -> None:
    layout = world.broker.managed.layout
    private = [
        layout.admin_password_file,
        layout.relay_password_file,
        layout.dynsec_file,
        layout.config_file,
        layout.log_file,
        world.certificates.key,
        world.certificates.ca_key,
    ]
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in private}
    assert modes == dict.fromkeys(modes, 0o600)
    for directory in (layout.root, layout.credentials_dir):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    # Public by design: the certificates (lamps and Mosquitto's own user read them).
    for public in (world.certificates.certificate, world.certificates.ca_certificate):
        assert stat.S_IMODE(public.stat().st_mode) == 0o644, public


@pytest.mark.parametrize("umask", [0o000, 0o022])
def test_the_device_settings_file_is_0600_whatever_the_umask(
    world: SecureWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str], umask: int
) -> None:
    capsys.readouterr()
    assert _relay(world, "lamp", "add", "lamp-new") == 0
    token = capsys.readouterr().out.strip()
    env_file = tmp_path / "device.env"
    env_file.write_text("TOUCHLAMP_DEVICE_HARDWARE__LED_KIND=mono\n", encoding="utf-8")
    env_file.chmod(0o644)  # an earlier, carelessly written file
    previous = os.umask(umask)
    try:
        assert main(["device", "enroll", token, "--env-file", str(env_file)]) == 0
    finally:
        os.umask(previous)
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert "HARDWARE__LED_KIND=mono" in env_file.read_text(encoding="utf-8")  # kept
    ca_file = tmp_path / "device-ca.pem"
    assert stat.S_IMODE(ca_file.stat().st_mode) == 0o644  # a certificate is public
    world.exchange()
