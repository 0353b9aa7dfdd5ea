"""Rendering Mosquitto's files from settings: pure functions from values to text.

Two files: ``mosquitto.conf`` (or the ``conf.d`` drop-in) and the dynamic-security JSON, which
holds the hashed credentials, the roles and the default "deny everything".
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from touchlamp.broker.acl import ADMIN_ROLE as ADMIN_ROLE_NAME
from touchlamp.broker.acl import (
    DEFAULT_ACL_ACCESS,
    INSTALLED_RELAY_CLIENT_ID,
    RELAY_CLIENT_TEXT,
    admin_role,
    relay_role,
)
from touchlamp.broker.acl import RELAY_ROLE as RELAY_ROLE_NAME
from touchlamp.broker.passwords import PasswordHash
from touchlamp.config.broker import BrokerSettings, is_loopback
from touchlamp.protocol.topics import Topics

__all__ = [
    "AUTOSAVE_SETTINGS",
    "Credential",
    "MosquittoPaths",
    "render_dynsec_json",
    "render_mosquitto_conf",
]

# Used when limits.save_every_change is chosen (the default is a save about every 2 s, see
# config/broker.py). Measured with Mosquitto 2.0.11 (QoS 1 message queued for an offline MQTT 5
# session, broker killed with SIGKILL after the PUBACK, then restarted): Mosquitto's own default
# (a save every 30 minutes) lost it 10 of 10 times. With these two lines Mosquitto rewrites its
# database after every change, in the same loop iteration that sent the PUBACK: a kill 20 ms after
# the PUBACK lost 0 of 30, but the PUBACK still goes out ~1 ms *before* the write and fsync, so a
# kill within that millisecond can lose the message (25/30 lost at once, 4/30 at 1 ms). Mosquitto
# 2.0 has no setting that saves first.
AUTOSAVE_SETTINGS = ("autosave_on_changes true", "autosave_interval 1")


def _autosave_comment(every_change: bool) -> list[str]:
    if every_change:
        return [
            "# Save after every change (limits.save_every_change): an acknowledged QoS 1 message",
            "# survives a kill (see touchlamp.broker.render.AUTOSAVE_SETTINGS for what was",
            "# measured), but each save rewrites the whole database, which caps the message rate.",
        ]
    return [
        "# Periodic saves: a broker killed between saves forgets what it acknowledged since the",
        "# last; touchlamp's lamps and relay send such touches and glows again (RELIABILITY.md).",
    ]


@dataclass(frozen=True, slots=True)
class MosquittoPaths:
    """Where the rendered ``mosquitto.conf`` points Mosquitto, and what it leaves to the main file.

    ``persistence_location``/``user``/``log_to_stderr`` are ``None``/``False`` for a ``conf.d``
    drop-in: Debian's main ``mosquitto.conf`` already sets them and Mosquitto refuses a second
    ``persistence_location``.
    """

    dynsec_file: str
    persistence_location: str | None = None
    user: str | None = None
    log_to_stderr: bool = False


@dataclass(frozen=True, slots=True)
class Credential:
    """A dynamic-security client we create in the initial JSON (admin or relay)."""

    username: str
    password: PasswordHash


def render_mosquitto_conf(settings: BrokerSettings, *, paths: MosquittoPaths, readme: str) -> str:
    """The Mosquitto configuration for ``settings``, starting with ``readme`` as comments."""
    limits = settings.limits
    lines = [
        *_comment(readme),
        "",
        "# Security options apply to every listener alike (this must precede the listeners).",
        "per_listener_settings false",
        "allow_anonymous false",
        "",
        "# Credentials and ACLs live in the dynamic-security plugin's JSON, so lamps are added",
        "# and removed at run time without a restart. Measured (2.0.11): deleting a client",
        "# disconnects its live connection at once (DISCONNECT reason 0x98, administrative",
        "# action), and so does changing its password.",
        f"plugin {_path(str(settings.plugin_path))}",
        f"plugin_opt_config_file {_path(paths.dynsec_file)}",
        "",
        *_autosave_comment(limits.save_every_change),
        "persistence true",
        *(
            [f"persistence_location {_path(paths.persistence_location)}"]
            if paths.persistence_location is not None
            else []
        ),
        *(
            AUTOSAVE_SETTINGS
            if limits.save_every_change
            else (f"autosave_interval {limits.autosave_interval_seconds}",)
        ),
        f"persistent_client_expiration {limits.persistent_client_expiration}",
        "",
        "# Bounds: protocol payloads are at most a few KiB; an offline lamp's queue is capped.",
        f"max_packet_size {limits.max_packet_size}",
        f"max_queued_messages {limits.max_queued_messages}",
        f"max_queued_bytes {limits.max_queued_bytes}",
        "set_tcp_nodelay true",
        "",
        *_listeners(settings),
    ]
    if paths.user is not None:
        lines += [
            "",
            "# The account Mosquitto switches to when started as root.",
            f"user {paths.user}",
        ]
    if paths.log_to_stderr:
        lines += ["", "log_dest stderr"]
    return "\n".join(lines) + "\n"


def render_dynsec_json(
    *,
    topics: Topics,
    admin: Credential,
    relays: Sequence[Credential],
    readme: str,
) -> str:
    """The initial dynamic-security JSON: admin, relays, their roles, everything else denied.

    Lamps are not in it: ``touchlamp broker lamp add`` creates each at run time. The ``README``
    key is ignored by Mosquitto (JSON has no comments) and dropped the first time the plugin
    saves the file.
    """
    clients = [
        {
            "username": admin.username,
            "textName": "touchlamp admin (manages lamps and relays)",
            **_password_fields(admin.password),
            "roles": [{"rolename": ADMIN_ROLE_NAME}],
        },
        *(
            {
                "username": relay.username,
                # Bound to one client id, as lamps are: an unbound login may take any client
                # id, a lamp's included, and push that lamp off (SECURITY.md).
                "clientid": INSTALLED_RELAY_CLIENT_ID,
                "textName": RELAY_CLIENT_TEXT,
                **_password_fields(relay.password),
                "roles": [{"rolename": RELAY_ROLE_NAME}],
            }
            for relay in relays
        ),
    ]
    document = {
        "README": readme,
        "clients": clients,
        "groups": [],
        "roles": [admin_role().to_json(), relay_role(topics).to_json()],
        "defaultACLAccess": dict(DEFAULT_ACL_ACCESS),
    }
    return json.dumps(document, indent=2) + "\n"


def _listeners(settings: BrokerSettings) -> list[str]:
    # BrokerSettings refuses these already; settings built with model_copy() skip validation.
    exposed = [item.address for item in settings.listeners if not is_loopback(item.address)]
    if exposed or (settings.websockets.enabled and not settings.websockets.tls):
        raise ValueError(
            f"plain MQTT beyond loopback ({', '.join(exposed) or 'websockets'}) is not rendered: "
            "serve other hosts over TLS (touchlamp broker certs)"
        )
    lines = ["# Listeners: plain MQTT on loopback only; other hosts use TLS."]
    lines += [f"listener {item.port} {_word(item.address)}" for item in settings.listeners]
    tls = settings.tls
    if tls.enabled:
        lines += ["", "# MQTT over TLS.", f"listener {tls.port} {_word(tls.address)}"]
        lines += _tls_files(settings)
    websockets = settings.websockets
    if websockets.enabled:
        lines += [
            "",
            "# MQTT over websockets. Mosquitto 2.0.11 (Debian) ignores the address here and",
            "# listens on every interface: firewall this port if it must stay private.",
            f"listener {websockets.port} {_word(websockets.address)}",
            "protocol websockets",
        ]
        if websockets.tls:
            lines += _tls_files(settings)
    return lines


def _tls_files(settings: BrokerSettings) -> list[str]:
    tls = settings.tls
    if tls.certfile is None or tls.keyfile is None:
        raise ValueError(
            "TLS needs certfile and keyfile: set TOUCHLAMP_BROKER_TLS__CERTFILE/KEYFILE"
        )
    lines = [f"certfile {_path(str(tls.certfile))}", f"keyfile {_path(str(tls.keyfile))}"]
    if tls.cafile is not None:
        lines.append(f"cafile {_path(str(tls.cafile))}")
    if tls.require_certificate:
        lines.append("require_certificate true")
    return lines


def _password_fields(password: PasswordHash) -> dict[str, object]:
    return {
        "password": password.hash_b64,
        "salt": password.salt_b64,
        "iterations": password.iterations,
    }


def _comment(text: str) -> list[str]:
    return [f"# {line}".rstrip() for line in text.splitlines()]


def _path(value: str) -> str:
    # Mosquitto's config has no quoting: a line break would start a new directive.
    if not value or any(char in value for char in "\r\n\0") or value != value.strip():
        raise ValueError(
            f"path {value!r} cannot be written into mosquitto.conf: use one without line breaks "
            "or surrounding spaces"
        )
    return value


def _word(value: str) -> str:
    if not value or any(char.isspace() for char in value) or "#" in value:
        raise ValueError(f"{value!r} cannot be written into mosquitto.conf: use a plain address")
    return value
