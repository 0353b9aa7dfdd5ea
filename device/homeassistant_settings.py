"""The home broker's settings as the commands give them: from a URL, into a lamp's settings.

``--homeassistant mqtt://[USER:PASSWORD@]HOST:PORT`` of ``demo`` and ``sim`` becomes
``HomeAssistantSettings`` (``settings_from_url``) and then the ``homeassistant`` group of each
lamp's settings (``with_home_assistant``); ``default_configuration_url`` is the lamp's page as
Home Assistant's "Visit" link names it. No connection is made here.
"""

from __future__ import annotations

import socket
import urllib.parse

from pydantic import SecretStr

from touchlamp.config.device import DeviceSettings, HomeAssistantSettings

__all__ = ["default_configuration_url", "settings_from_url", "with_home_assistant"]


def default_configuration_url(port: int) -> str:
    """The lamp's page as the home network finds it: mDNS, ``<hostname>.local``."""
    return f"http://{socket.gethostname().split('.')[0]}.local:{port}/"


def with_home_assistant(
    settings: DeviceSettings, home: HomeAssistantSettings, page_port: int
) -> DeviceSettings:
    """``settings`` with ``home`` as its home broker (``--homeassistant`` of demo and sim);
    ``page_port`` is the simulator page's port for the device page's link (0: unknown yet)."""
    if page_port and home.configuration_url is None:
        home = home.model_copy(update={"page_port": page_port})
    return settings.model_copy(update={"homeassistant": home})


def settings_from_url(url: str) -> HomeAssistantSettings:
    """``mqtt://[USER:PASSWORD@]HOST:PORT`` (``mqtts://`` for TLS) as settings.

    ``ValueError`` names what is wrong and the form expected.
    """
    form = "mqtt://[USER:PASSWORD@]HOST:PORT (or mqtts:// for TLS)"
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ValueError(f"{url!r} is not a home broker address: use {form}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{url!r} has no valid port: use {form}") from None
    if not parts.hostname:
        raise ValueError(f"{url!r} names no host: use {form}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{url!r} has more than a host and port: use {form}")
    user = urllib.parse.unquote(parts.username) if parts.username else None
    password = urllib.parse.unquote(parts.password) if parts.password is not None else None
    return HomeAssistantSettings(
        host=parts.hostname,
        port=port,
        username=user,
        password=SecretStr(password) if password is not None else None,
        tls=parts.scheme == "mqtts",
    )
