"""The checks of a relay: settings, clock, its service and ``/healthz``, the broker, the
relay's login and the admin login."""

from __future__ import annotations

import http.client
import ssl
from collections.abc import Iterator
from enum import Enum
from pathlib import Path

from touchlamp.config.relay import RelaySettings
from touchlamp.doctor.findings import Finding, fail, ok, skip
from touchlamp.doctor.network import check_broker
from touchlamp.doctor.probes import Probes, check_clock, check_service
from touchlamp.doctor.session import open_session
from touchlamp.doctor.settings_file import read_settings
from touchlamp.install_commands import unit_name

__all__ = ["check_relay"]


def check_relay(env_file: Path, *, probes: Probes) -> Iterator[Finding]:
    settings_finding, settings = read_settings(RelaySettings, env_file)
    yield from settings_finding
    if settings is None:
        return
    mqtt_settings = settings.mqtt
    host, port = mqtt_settings.host, mqtt_settings.effective_port
    yield ok(
        f"settings {env_file}: broker {host}:{port}"
        + (" (TLS)" if mqtt_settings.tls else "")
        + f", store {_store_kind(settings.store_location)}"
    )
    yield check_clock(probes)
    yield check_service("relay", probes)
    health, relay_state = _check_health(settings, probes.timeout)
    yield health
    if mqtt_settings.password is None:
        yield fail(
            f"no password for the relay's broker user {mqtt_settings.username}",
            f"set TOUCHLAMP_RELAY_MQTT__PASSWORD in {env_file} (the broker's set-up printed it)",
        )
        return
    relay_password = mqtt_settings.password.get_secret_value()
    reached = yield from check_broker(
        mqtt_settings, probes, prefix="TOUCHLAMP_RELAY_MQTT", then="credentials"
    )
    if reached is None:
        return
    yield _check_relay_login(
        settings, env_file, reached.context, relay_state, probes, password=relay_password
    )
    yield _check_admin_login(settings, env_file, reached.context, probes)


def _check_relay_login(
    settings: RelaySettings,
    env_file: Path,
    context: ssl.SSLContext | None,
    relay_state: _RelayState,
    probes: Probes,
    *,
    password: str,
) -> Finding:
    """The relay's own login. Its client id is bound to it (and holds its session), so doctor
    connects with it only when no relay runs; a running, connected relay is the proof."""
    mqtt_settings = settings.mqtt
    username = mqtt_settings.username
    if relay_state is _RelayState.CONNECTED:
        return ok(f"the broker accepted the relay user {username} (the running relay is connected)")
    if relay_state is _RelayState.NOT_CONNECTED:
        return skip("relay login: the relay runs but is not connected (see above)")
    if probes.service_state(unit_name("relay")) == "active":
        return skip(
            "relay login: not checked while the relay runs (it holds the client id); set "
            "TOUCHLAMP_RELAY_METRICS_PORT so that doctor can ask the relay itself"
        )
    with open_session(
        host=mqtt_settings.host,
        port=mqtt_settings.effective_port,
        username=username,
        password=password,
        context=context,
        timeout=probes.timeout,
        client_id=mqtt_settings.client_id,
        session_expiry=mqtt_settings.session_expiry_seconds,
    ) as session:
        if session.refused is None:
            return ok(f"the broker accepted the relay user {username}")
        return fail(
            f"the broker {mqtt_settings.host}:{mqtt_settings.effective_port} refused the relay "
            f"user {username} with client id {mqtt_settings.client_id} ({session.refused})",
            f"make TOUCHLAMP_RELAY_MQTT__USERNAME/PASSWORD in {env_file} match the broker's "
            "(its set-up printed them); the client id must be the one the broker expects",
        )


def _check_admin_login(
    settings: RelaySettings, env_file: Path, context: ssl.SSLContext | None, probes: Probes
) -> Finding:
    admin = settings.admin
    if admin.password is None:
        return skip(
            "admin login: no TOUCHLAMP_RELAY_ADMIN__PASSWORD "
            "(only `touchlamp relay lamp add/remove` need it)"
        )
    mqtt_settings = settings.mqtt
    with open_session(
        host=mqtt_settings.host,
        port=mqtt_settings.effective_port,
        username=admin.username,
        password=admin.password.get_secret_value(),
        context=context,
        timeout=probes.timeout,
    ) as session:
        if session.refused is None:
            return ok(f"the broker accepted the admin user {admin.username}")
        return fail(
            f"the broker {mqtt_settings.host}:{mqtt_settings.effective_port} refused the admin "
            f"user {admin.username} ({session.refused})",
            f"make TOUCHLAMP_RELAY_ADMIN__USERNAME/PASSWORD in {env_file} match the broker's "
            "(its set-up printed them)",
        )


class _RelayState(Enum):
    CONNECTED = "connected"
    NOT_CONNECTED = "not connected"
    NOT_ANSWERING = "not answering"
    UNKNOWN = "unknown"  # its /healthz endpoint is off


def _check_health(settings: RelaySettings, timeout: float) -> tuple[Finding, _RelayState]:
    if settings.metrics_port == 0:
        return skip(
            "relay responding: its /healthz endpoint is off "
            "(set TOUCHLAMP_RELAY_METRICS_PORT, e.g. 9108, to let doctor ask it)"
        ), _RelayState.UNKNOWN
    host, port = settings.metrics_host, settings.metrics_port
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        body = response.read(200).decode("utf-8", "replace").strip()
    except OSError as error:
        return fail(
            f"the relay does not answer on http://{host}:{port}/healthz "
            f"({error.strerror or error})",
            "sudo systemctl status touchlamp-relay; journalctl -u touchlamp-relay -n 50",
        ), _RelayState.NOT_ANSWERING
    finally:
        connection.close()
    if response.status == http.HTTPStatus.OK:
        return ok(
            f"the relay is running and connected to the broker ({body})"
        ), _RelayState.CONNECTED
    return fail(
        f"the relay answers but is not healthy ({response.status}: {body})",
        "journalctl -u touchlamp-relay -n 50 shows why it cannot reach the broker",
    ), _RelayState.NOT_CONNECTED


def _store_kind(location: str) -> str:
    return "PostgreSQL" if location.startswith(("postgresql:", "postgres:")) else location
