"""The home broker's client: how the lamp connects to it, and why a connection failed.

One paho client per connection (``home_client``: the home broker's own login, protocol and
TLS; it connects once, and whoever holds it reconnects with its own backoff), shared by the
bridge (device/homeassistant.py) and the removal of the lamp's entities
(device/homeassistant_removal.py).
"""

from __future__ import annotations

import contextlib
import socket
import ssl

import paho.mqtt.client as mqtt

from touchlamp.config.device import HomeAssistantSettings
from touchlamp.errors import TouchlampError
from touchlamp.mqtt.client import Will, new_client
from touchlamp.mqtt.tls import tls_context

__all__ = [
    "CANNOT_CONNECT",
    "LOGIN_REFUSED",
    "HomeAssistantError",
    "close_client",
    "home_client",
    "home_tls_context",
    "why_unreachable",
]

CANNOT_CONNECT = "cannot connect"
"""All paho says when a connection fails (its on_connect_fail carries no error)."""
LOGIN_REFUSED = frozenset({4, 5, 0x86, 0x87})
"""CONNACK codes of a refused login: 3.1.1's bad login / not authorised, and 5's the same."""


class HomeAssistantError(TouchlampError):
    """The home broker could not be reached or refused us; the message says what to do."""


def close_client(client: mqtt.Client) -> None:
    """Disconnect (when still connected) and stop paho's network thread."""
    with contextlib.suppress(Exception):
        client.disconnect()
    client.loop_stop()


def home_client(
    settings: HomeAssistantSettings,
    client_id: str,
    *,
    tls: ssl.SSLContext | None,
    connect_timeout: float,
    will: Will | None = None,
    max_queued: int | None = None,
) -> mqtt.Client:
    """A client of the home broker (its own login and protocol); it connects once, the bridge
    reconnects with its own backoff."""
    return new_client(
        client_id,
        username=settings.username,
        password=settings.password,
        tls=tls,
        log_as=f"{__name__}.paho",
        mqtt5=settings.protocol == "5",
        reconnect_on_failure=False,
        connect_timeout=connect_timeout,
        will=will,
        max_queued=max_queued,
    )


def home_tls_context(settings: HomeAssistantSettings) -> ssl.SSLContext:
    """The TLS the home broker's settings ask for (``ca_file``, else the system's CAs)."""
    return tls_context(
        settings.ca_file,
        setting="TOUCHLAMP_DEVICE_HOMEASSISTANT__CA_FILE",
        whose="the home broker's",
        error=HomeAssistantError,
    )


def why_unreachable(
    settings: HomeAssistantSettings, host: str, *, tls: ssl.SSLContext | None
) -> str:
    """What paho does not say (its on_connect_fail carries no error): try once ourselves,
    on the calling thread, to name the cause and its fix."""
    port = settings.effective_port
    try:
        with socket.create_connection(
            (host, port), timeout=settings.connect_timeout_seconds
        ) as raw:
            if tls is not None:
                with tls.wrap_socket(raw, server_hostname=host):
                    pass
    except ssl.SSLCertVerificationError as error:
        trusted = settings.ca_file or "the system's CAs"
        return (
            f"its TLS certificate was refused: {error.verify_message}; set "
            "TOUCHLAMP_DEVICE_HOMEASSISTANT__CA_FILE to the CA that signed it (now: "
            f"{trusted}), and HOMEASSISTANT__HOST to a name the certificate lists"
        )
    except (OSError, ValueError) as error:
        return str(error)
    return CANNOT_CONNECT
