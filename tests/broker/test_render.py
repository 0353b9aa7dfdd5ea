"""Rendering: the Mosquitto config and the dynamic-security JSON, checked as text and data."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from touchlamp.broker.acl import (
    ADMIN_ROLE,
    CONTROL_TOPIC,
    RELAY_ROLE,
    RESPONSE_TOPIC,
    Acl,
    admin_role,
    lamp_role,
    relay_role,
)
from touchlamp.broker.passwords import hash_password
from touchlamp.broker.render import (
    AUTOSAVE_SETTINGS,
    Credential,
    MosquittoPaths,
    render_dynsec_json,
    render_mosquitto_conf,
)
from touchlamp.config.broker import (
    BrokerSettings,
    LimitsSettings,
    ListenerSettings,
    TlsSettings,
    WebsocketsSettings,
)
from touchlamp.config.relay import RelaySettings
from touchlamp.protocol.topics import Topics

ROOT = "touchlamp/v1"


def _settings(**extra: object) -> BrokerSettings:
    return BrokerSettings(
        state_dir=Path("/nonexistent"),
        plugin_path=Path("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"),
        **extra,  # type: ignore[arg-type]
    )


def _directives(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def _conf(settings: BrokerSettings | None = None, **paths: object) -> list[str]:
    return _directives(
        render_mosquitto_conf(
            settings or _settings(),
            paths=MosquittoPaths(dynsec_file="/var/lib/x/dynsec.json", **paths),  # type: ignore[arg-type]
            readme="first line\nsecond line",
        )
    )


def test_the_config_starts_with_the_readme_as_comments() -> None:
    text = render_mosquitto_conf(
        _settings(), paths=MosquittoPaths(dynsec_file="d.json"), readme="first line\nsecond line"
    )
    assert text.splitlines()[:2] == ["# first line", "# second line"]


def test_security_comes_first_and_anonymous_is_refused() -> None:
    lines = _conf()
    assert lines[:2] == ["per_listener_settings false", "allow_anonymous false"]
    assert lines.index("per_listener_settings false") < min(
        i for i, line in enumerate(lines) if line.startswith("listener ")
    )


def test_the_dynamic_security_plugin_is_loaded_with_its_store() -> None:
    lines = _conf()
    assert "plugin /usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so" in lines
    assert "plugin_opt_config_file /var/lib/x/dynsec.json" in lines


def test_persistence_saves_every_second_by_default_and_limits_are_bounded() -> None:
    lines = _conf()
    assert "autosave_on_changes true" not in lines
    for expected in (
        "persistence true",
        "autosave_interval 1",
        "persistent_client_expiration 30d",
        "max_packet_size 65536",
        "max_queued_messages 10000",
        "max_queued_bytes 8388608",
    ):
        assert expected in lines


def test_a_drop_in_leaves_location_user_and_logging_to_the_main_file() -> None:
    left_to_main = {"persistence_location", "user", "log_dest", "pid_file"}
    assert not [line for line in _conf() if line.split()[0] in left_to_main]


def test_a_managed_config_sets_location_user_and_logging() -> None:
    lines = _conf(persistence_location="./", user="mosquitto", log_to_stderr=True)
    assert {"persistence_location ./", "user mosquitto", "log_dest stderr"} <= set(lines)


def test_listeners_come_from_the_settings() -> None:
    settings = _settings(
        listeners=[ListenerSettings(address="127.0.0.1", port=1884), ListenerSettings(port=1885)]
    )
    listeners = [line for line in _conf(settings) if line.startswith("listener ")]
    assert listeners == ["listener 1884 127.0.0.1", "listener 1885 127.0.0.1"]


def test_tls_and_websockets_listeners(tmp_path: Path) -> None:
    cert, key, ca = (tmp_path / name for name in ("cert.pem", "key.pem", "ca.pem"))
    for path in (cert, key, ca):
        path.write_text("x", encoding="utf-8")
    settings = _settings(
        tls=TlsSettings(
            enabled=True, port=8883, certfile=cert, keyfile=key, cafile=ca, require_certificate=True
        ),
        websockets=WebsocketsSettings(enabled=True, port=9001, tls=True),
    )
    lines = _conf(settings)
    tls_at = lines.index("listener 8883 0.0.0.0")
    assert lines[tls_at + 1 : tls_at + 5] == [
        f"certfile {cert}",
        f"keyfile {key}",
        f"cafile {ca}",
        "require_certificate true",
    ]
    ws_at = lines.index("listener 9001 127.0.0.1")
    assert lines[ws_at + 1 : ws_at + 4] == [
        "protocol websockets",
        f"certfile {cert}",
        f"keyfile {key}",
    ]


def test_no_tls_or_websockets_unless_enabled() -> None:
    lines = _conf()
    assert [line for line in lines if line.startswith("listener ")] == ["listener 1883 127.0.0.1"]
    assert not [line for line in lines if line.startswith(("certfile", "protocol"))]


def test_a_path_with_a_line_break_cannot_inject_directives() -> None:
    with pytest.raises(ValueError, match="line breaks"):
        render_mosquitto_conf(
            _settings(),
            paths=MosquittoPaths(dynsec_file="x.json\nallow_anonymous true"),
            readme="",
        )


def _store() -> dict[str, object]:
    document = json.loads(
        render_dynsec_json(
            topics=Topics(ROOT),
            admin=Credential("admin", hash_password("admin secret")),
            relays=[Credential("relay", hash_password("relay secret"))],
            readme="what this is",
        )
    )
    assert isinstance(document, dict)
    return document


def _clients() -> dict[str, dict[str, Any]]:
    clients = _store()["clients"]
    assert isinstance(clients, list)
    return {client["username"]: client for client in clients}


def test_the_store_denies_everything_by_default() -> None:
    assert _store()["defaultACLAccess"] == {
        "publishClientSend": False,
        "publishClientReceive": False,
        "subscribe": False,
        "unsubscribe": False,
    }


def test_the_store_holds_hashes_only() -> None:
    text = json.dumps(_store())
    assert "admin secret" not in text
    assert "relay secret" not in text
    relay = _clients()["relay"]
    salt = base64.b64decode(relay["salt"])
    assert hash_password("relay secret", salt=salt).hash_b64 == relay["password"]


def test_the_relay_has_its_role_and_is_bound_to_the_relays_client_id() -> None:
    clients = _clients()
    assert clients["relay"]["clientid"] == RelaySettings().mqtt.client_id == "touchlamp-relay"
    assert clients["relay"]["roles"] == [{"rolename": RELAY_ROLE}]
    assert clients["admin"]["roles"] == [{"rolename": ADMIN_ROLE}]
    assert _store()["README"] == "what this is"


def _acls(acls: tuple[Acl, ...]) -> set[tuple[str, str]]:
    return {(acl.acltype, acl.topic) for acl in acls}


def test_a_lamp_role_is_exactly_its_own_topics() -> None:
    lamp = f"{ROOT}/lamp/lamp-a"
    reads = {f"{lamp}/glow", f"{lamp}/group", f"{lamp}/pair/response"}
    assert lamp_role(Topics(ROOT), "lamp-a").name == "lamp:lamp-a"
    assert _acls(lamp_role(Topics(ROOT), "lamp-a").acls) == {
        ("publishClientSend", f"{lamp}/touch"),
        ("publishClientSend", f"{lamp}/availability"),
        ("publishClientSend", f"{lamp}/pair"),
        *(("subscribeLiteral", topic) for topic in reads),
        *(("unsubscribeLiteral", topic) for topic in reads),
        *(("publishClientReceive", topic) for topic in reads),
    }


def test_the_relay_role_reads_lamp_output_and_writes_lamp_input() -> None:
    every = f"{ROOT}/lamp/+"
    reads = {f"{every}/touch", f"{every}/availability", f"{every}/pair"}
    filters = reads | {f"$share/+/{topic}" for topic in reads}
    assert _acls(relay_role(Topics(ROOT)).acls) == {
        *(("subscribePattern", topic) for topic in filters),
        *(("unsubscribePattern", topic) for topic in filters),
        *(("publishClientReceive", topic) for topic in reads),
        ("publishClientSend", f"{every}/glow"),
        ("publishClientSend", f"{every}/group"),
        ("publishClientSend", f"{every}/pair/response"),
    }


def test_the_admin_role_is_only_the_control_topic() -> None:
    assert _acls(admin_role().acls) == {
        ("publishClientSend", CONTROL_TOPIC),
        ("subscribeLiteral", RESPONSE_TOPIC),
        ("unsubscribeLiteral", RESPONSE_TOPIC),
        ("publishClientReceive", RESPONSE_TOPIC),
    }


def test_saving_after_every_change_can_be_chosen() -> None:
    every_change = _conf(_settings(limits=LimitsSettings(save_every_change=True)))
    assert set(AUTOSAVE_SETTINGS) <= set(every_change)
    assert not set(AUTOSAVE_SETTINGS) <= set(_conf())
    slower = _conf(_settings(limits=LimitsSettings(autosave_interval_seconds=30)))
    assert "autosave_interval 30" in slower


def test_a_save_interval_beyond_the_relays_confirmation_window_is_refused() -> None:
    with pytest.raises(ValidationError, match="autosave_interval_seconds"):
        LimitsSettings(autosave_interval_seconds=31)
