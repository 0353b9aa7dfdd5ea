"""TLS: the certificates `touchlamp broker certs` makes, the rule that plain MQTT stays on
loopback, and lamps that verify the broker with the CA their enrollment token carried.
"""

from __future__ import annotations

import json
import ssl
import stat
import subprocess
import warnings
from pathlib import Path

import pytest

from tests.device.link_support import EventLog
from tests.security.world import SecureWorld
from tests.support.broker import MqttProbe
from tests.support.raw_mqtt import RawClient, connect_packet
from tests.support.waiting import wait_until
from touchlamp.broker.certs import CertificateError, make_certificates
from touchlamp.broker.render import MosquittoPaths, render_mosquitto_conf
from touchlamp.cli import main
from touchlamp.config.broker import BrokerSettings, TlsSettings
from touchlamp.config.common import SettingsError, load_settings
from touchlamp.config.device import DeviceSettings
from touchlamp.device.events import Connected
from touchlamp.device.link import LampLink
from touchlamp.protocol import decode_token


def _openssl(*args: str | Path) -> str:
    done = subprocess.run(
        ["openssl", *(str(arg) for arg in args)], capture_output=True, text=True, check=False
    )
    return done.stdout + done.stderr


def _exit_code(argv: list[str]) -> int:
    """``touchlamp ARGV``'s exit code, whether argparse or the command decided it."""
    try:
        return main(argv)
    except SystemExit as usage:
        code = usage.code
    return code if isinstance(code, int) else -1


# -- touchlamp broker certs ------------------------------------------------------------------


def test_broker_certs_makes_a_private_ca_and_a_certificate_for_exactly_the_given_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tls"
    argv = ["broker", "certs", "--out", str(out), "--host", "mqtt.example.net"]
    assert main([*argv, "--host", "localhost", "--ip", "192.0.2.10"]) == 0

    said = capsys.readouterr().out
    assert f"TOUCHLAMP_BROKER_TLS__CERTFILE={out / 'server.pem'}" in said
    assert f"TOUCHLAMP_RELAY_PUBLIC__CA_FILE={out / 'ca.pem'}" in said
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in out.iterdir()}
    assert modes == {"ca.pem": 0o644, "ca.key": 0o600, "server.pem": 0o644, "server.key": 0o600}
    names = _openssl("x509", "-noout", "-ext", "subjectAltName", "-in", out / "server.pem")
    assert "DNS:mqtt.example.net, DNS:localhost, IP Address:192.0.2.10" in names
    checked = _openssl(
        "verify", "-purpose", "sslserver", "-CAfile", out / "ca.pem", out / "server.pem"
    )
    assert checked.strip().endswith(": OK")
    # The CA may only sign server certificates, not other CAs.
    assert "CA:TRUE, pathlen:0" in _openssl("x509", "-noout", "-text", "-in", out / "ca.pem")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--host", "mqtt example.net"], "is not a host name"),
        (["--host=-lead.example.net"], "is not a host name"),
        (["--host", "under_score.example.net"], "is not a host name"),
        (["--ip", "300.1.1.1"], "is not an IP address"),
        ([], "pass --host NAME and/or --ip ADDRESS"),
    ],
)
def test_broker_certs_refuses_what_cannot_be_a_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    assert _exit_code(["broker", "certs", "--out", str(tmp_path / "tls"), *arguments]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "tls").exists()


def test_renewing_keeps_the_ca_so_enrolled_lamps_keep_trusting_the_broker(tmp_path: Path) -> None:
    first = make_certificates(tmp_path, hosts=["old.example.net"])
    ca_before, server_before = first.ca_certificate.read_bytes(), first.certificate.read_bytes()

    second = make_certificates(tmp_path, hosts=["new.example.net"])

    assert not second.ca_created
    assert second.ca_certificate.read_bytes() == ca_before
    assert second.certificate.read_bytes() != server_before
    checked = _openssl("verify", "-CAfile", second.ca_certificate, second.certificate)
    assert checked.strip().endswith(": OK")


def test_a_ca_key_without_its_certificate_is_not_replaced_silently(tmp_path: Path) -> None:
    made = make_certificates(tmp_path, hosts=["localhost"])
    made.ca_certificate.unlink()
    key = made.ca_key.read_bytes()
    with pytest.raises(CertificateError, match=r"ca\.key exists but .*ca\.pem does not"):
        make_certificates(tmp_path, hosts=["localhost"])
    assert made.ca_key.read_bytes() == key


# -- plain MQTT only on loopback -------------------------------------------------------------


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "192.168.1.20", "mqtt.example.net", ""])  # noqa: S104
def test_a_plain_listener_beyond_loopback_is_a_settings_error_naming_the_fix(
    address: str,
) -> None:
    with pytest.raises(SettingsError, match=r"listeners\.0\.address") as error:
        load_settings(BrokerSettings, listeners=[{"address": address, "port": 1883}])
    assert "touchlamp broker certs --out DIR --host NAME" in str(error.value)
    assert "TOUCHLAMP_BROKER_TLS__ENABLED=true" in str(error.value)


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.53", "::1", "localhost"])
def test_plain_listeners_on_loopback_are_fine(address: str) -> None:
    settings = load_settings(BrokerSettings, listeners=[{"address": address, "port": 1883}])
    assert settings.listeners[0].address == address


def test_plain_websockets_are_refused_because_they_listen_everywhere() -> None:
    with pytest.raises(SettingsError, match="plain websockets") as error:
        load_settings(BrokerSettings, websockets={"enabled": True})
    assert "TOUCHLAMP_BROKER_WEBSOCKETS__TLS=true" in str(error.value)


def test_broker_config_for_other_hosts_without_tls_exits_2_naming_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["broker", "config", "--out", str(tmp_path / "out"), "--host", "0.0.0.0"]) == 2  # noqa: S104
    assert "touchlamp broker certs" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_rendered_config_serves_other_hosts_only_over_tls(tmp_path: Path) -> None:
    made = make_certificates(tmp_path / "tls", hosts=["mqtt.example.net"])
    settings = BrokerSettings(
        tls=TlsSettings(enabled=True, certfile=made.certificate, keyfile=made.key)
    )
    conf = render_mosquitto_conf(settings, paths=MosquittoPaths(dynsec_file="d.json"), readme="")
    blocks = conf.split("\nlistener ")[1:]
    plain = [block for block in blocks if "certfile" not in block]
    served = [block.splitlines()[0] for block in blocks]
    assert served == ["1883 127.0.0.1", "8883 0.0.0.0"]
    assert [block.splitlines()[0] for block in plain] == ["1883 127.0.0.1"]
    assert "allow_anonymous false" in conf


def test_settings_copied_past_validation_still_render_no_plain_listener_beyond_loopback() -> None:
    settings = BrokerSettings()
    exposed = settings.model_copy(
        update={"listeners": [settings.listeners[0].model_copy(update={"address": "0.0.0.0"})]}  # noqa: S104
    )
    with pytest.raises(ValueError, match="plain MQTT beyond loopback"):
        render_mosquitto_conf(exposed, paths=MosquittoPaths(dynsec_file="d.json"), readme="")


# -- lamps verify the broker -----------------------------------------------------------------


def _link(world: SecureWorld, tmp_path: Path, *, host: str, ca_file: Path) -> LampLink:
    return LampLink(
        lamp_id="lamp-t",
        password=world.broker.add_lamp("lamp-t"),
        sink=EventLog(),
        state_dir=tmp_path / "lamp-t",
        host=host,
        port=world.tls_port,
        topic_root=world.topics.root,
        tls=True,
        ca_file=ca_file,
        reconnect_min_seconds=0.05,
        reconnect_max_seconds=0.3,
    )


def _refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "touchlamp.device.link" and "certificate" in record.getMessage()
    ]


def test_a_lamp_enrolled_with_a_token_verifies_the_broker_with_the_ca_it_carries(
    world: SecureWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    relay_env = str(world.relay_env_file())
    capsys.readouterr()
    assert main(["relay", "lamp", "add", "lamp-t", "--json", "--env-file", relay_env]) == 0
    token = json.loads(capsys.readouterr().out)["token"]
    enrollment = decode_token(token)
    assert (enrollment.host, enrollment.port, enrollment.tls) == ("localhost", world.tls_port, True)
    assert enrollment.ca == world.certificates.ca_certificate.read_text(encoding="ascii")

    env_file = tmp_path / "lamp-t.env"
    assert main(["device", "enroll", token, "--env-file", str(env_file)]) == 0
    settings = load_settings(DeviceSettings, env_file=env_file, state_dir=tmp_path / "state")
    assert settings.mqtt.ca_file == (tmp_path / "lamp-t-ca.pem").resolve()
    group = world.store.group_of("lamp-a")
    assert group is not None
    world.store.join_group("lamp-t", group.id, max_size=8)

    events = EventLog()
    link = LampLink.from_settings(settings, sink=events)
    link.start()
    try:
        events.wait_for(Connected)
        before = len(world.a.glows), len(world.b.glows)
        link.send_touch("#123456")
        for lamp, count in zip((world.a, world.b), before, strict=True):
            assert lamp.wait_glows(count + 1)[-1].sender == "lamp-t"
    finally:
        link.stop()
    world.exchange()


def test_a_lamp_refuses_a_broker_certificate_from_another_ca(
    world: SecureWorld, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    other = make_certificates(tmp_path / "other-ca", hosts=["localhost"])
    link = _link(world, tmp_path, host="localhost", ca_file=other.ca_certificate)
    link.start()
    try:
        wait_until(lambda: bool(_refusals(caplog)), "a log line refusing the certificate")
        world.exchange()  # meanwhile, the legitimate lamps go on
        assert not link.connected
    finally:
        link.stop()
    line = _refusals(caplog)[0]
    assert "\n" not in line
    assert f"not signed by the CA in {other.ca_certificate} (wrong CA)" in line
    assert "TOUCHLAMP_DEVICE_MQTT__CA_FILE" in line


def test_a_lamp_refuses_a_broker_certificate_for_another_host_name(
    world: SecureWorld, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The certificate names "localhost"; this lamp dials 127.0.0.1 (the right CA, though).
    link = _link(world, tmp_path, host="127.0.0.1", ca_file=world.certificates.ca_certificate)
    link.start()
    try:
        wait_until(lambda: bool(_refusals(caplog)), "a log line refusing the certificate")
        world.exchange()
        assert not link.connected
    finally:
        link.stop()
    line = _refusals(caplog)[0]
    assert "\n" not in line
    assert "its TLS certificate is not valid for '127.0.0.1', the name this lamp dials" in line
    assert "re-issue it with `touchlamp broker certs`, adding --host 127.0.0.1" in line


def test_tls_does_not_replace_the_login(world: SecureWorld) -> None:
    stranger = MqttProbe(
        host="localhost",
        port=world.tls_port,
        username=None,
        password=None,
        client_id="stranger",
        tls_ca=str(world.certificates.ca_certificate),
    )
    assert str(stranger.connect()) == "Not authorized"
    stranger.close()
    world.exchange()


def test_plain_mqtt_on_the_tls_port_gets_nothing(world: SecureWorld) -> None:
    with RawClient("127.0.0.1", world.tls_port, timeout=5.0) as raw:
        raw.send(connect_packet(client_id=b"lamp-a", username=b"lamp-a", password=b"x"))
        assert raw.closed()
    world.exchange()


@pytest.mark.parametrize(
    ("version", "accepted"),
    [("TLSv1", False), ("TLSv1_1", False), ("TLSv1_2", True), ("TLSv1_3", True)],
)
def test_only_tls_1_2_and_later_are_accepted(
    world: SecureWorld, version: str, *, accepted: bool
) -> None:
    context = ssl.create_default_context(cafile=str(world.certificates.ca_certificate))
    with warnings.catch_warnings():
        # Python deprecates the old versions; offering them is the point of this test.
        warnings.simplefilter("ignore", DeprecationWarning)
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
        context.minimum_version = context.maximum_version = ssl.TLSVersion[version]
    with RawClient("127.0.0.1", world.tls_port) as raw:
        sock = raw.socket
        if accepted:
            with context.wrap_socket(sock, server_hostname="localhost") as wrapped:
                assert wrapped.version() == version.replace("_", ".")
        else:
            with pytest.raises(ssl.SSLError, match="ALERT"):
                context.wrap_socket(sock, server_hostname="localhost")
    world.exchange()
