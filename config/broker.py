"""``BrokerSettings``: how touchlamp renders and runs Mosquitto (prefix ``TOUCHLAMP_BROKER_``).

Nested groups use ``__``: ``TOUCHLAMP_BROKER_TLS__ENABLED=true``,
``TOUCHLAMP_BROKER_LIMITS__MAX_QUEUED_MESSAGES=500``. Listeners are a JSON list:
``TOUCHLAMP_BROKER_LISTENERS='[{"address": "127.0.0.1", "port": 1883}]'``.

Plain MQTT stays on loopback: a plain listener on any other address is a settings error, and
other hosts are served over TLS (the ``tls`` group, port 8883; ``touchlamp broker certs`` makes
the certificate). Plain websockets are refused too: Mosquitto 2.0.11 binds them to every
interface whatever their address says.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from touchlamp.protocol.messages import MAX_PAYLOAD_BYTES
from touchlamp.protocol.topics import DEFAULT_ROOT, Topics

__all__ = [
    "DEFAULT_PLUGIN_CANDIDATES",
    "BrokerSettings",
    "LimitsSettings",
    "ListenerSettings",
    "TlsSettings",
    "WebsocketsSettings",
    "default_plugin_path",
    "is_loopback",
]

Port = Annotated[int, Field(ge=1, le=65535, description="a TCP port, 1-65535")]

# Where distributions put Mosquitto's dynamic-security plugin (Debian: multiarch lib dir).
DEFAULT_PLUGIN_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/arm-linux-gnueabihf/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto_dynamic_security.so",
    "/usr/local/lib/mosquitto_dynamic_security.so",
)
_USERNAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
# MQTT's own upper bound for a packet (variable byte integer, 4 bytes).
_MQTT_MAX_PACKET = 268_435_455
# Topic, properties and headers around the largest payload the protocol allows.
_PACKET_OVERHEAD = 1024
_TLS_FIX = (
    "run `touchlamp broker certs --out DIR --host NAME`, then set "
    "TOUCHLAMP_BROKER_TLS__ENABLED=true, TOUCHLAMP_BROKER_TLS__CERTFILE=DIR/server.pem and "
    "TOUCHLAMP_BROKER_TLS__KEYFILE=DIR/server.key"
)


def is_loopback(address: str) -> bool:
    """Whether a listener on ``address`` is reachable from this machine only.

    A host name other than ``localhost`` is not: it may resolve to any interface.
    """
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def default_plugin_path() -> Path:
    """The first dynamic-security plugin found on this machine (else Debian amd64's path)."""
    for candidate in DEFAULT_PLUGIN_CANDIDATES:
        if Path(candidate).is_file():
            return Path(candidate)
    return Path(DEFAULT_PLUGIN_CANDIDATES[0])


class ListenerSettings(BaseModel):
    """A plain MQTT listener: loopback only (the relay and admin tools on this machine)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    address: str = "127.0.0.1"
    port: Port = 1883

    @field_validator("address")
    @classmethod
    def _only_on_loopback(cls, value: str) -> str:
        if not is_loopback(value):
            raise ValueError(
                f"a plain (unencrypted) listener on {value!r} would let anyone on the network "
                "read the lamps' passwords: keep plain listeners on 127.0.0.1 or ::1 and serve "
                f"other hosts over TLS on port 8883: {_TLS_FIX}"
            )
        return value


class TlsSettings(BaseModel):
    """An optional MQTT-over-TLS listener (certificate and key in PEM)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = False
    address: str = "0.0.0.0"  # noqa: S104  the TLS listener is the one meant for other hosts
    port: Port = 8883
    certfile: Path | None = None
    keyfile: Path | None = None
    # CA that signs *client* certificates; only used with require_certificate.
    cafile: Path | None = None
    require_certificate: bool = False

    @model_validator(mode="after")
    def _files_exist_when_enabled(self) -> Self:
        if not self.enabled:
            return self
        needed = {"certfile": self.certfile, "keyfile": self.keyfile}
        if self.require_certificate:
            needed["cafile"] = self.cafile
        for name, path in needed.items():
            variable = f"TOUCHLAMP_BROKER_TLS__{name.upper()}"
            if path is None:
                raise ValueError(f"TLS is enabled but {name} is not set: set {variable}")
            if not path.is_file():
                raise ValueError(f"TLS {name} {path} does not exist: fix {variable}")
        if self.cafile is not None and not self.cafile.is_file():
            raise ValueError(
                f"TLS cafile {self.cafile} does not exist: fix TOUCHLAMP_BROKER_TLS__CAFILE"
            )
        return self


class WebsocketsSettings(BaseModel):
    """An optional MQTT-over-websockets listener (for browsers), only with ``tls`` (wss://).

    Measured with Debian's Mosquitto 2.0.11: the websockets listener ignores ``address`` and
    listens on every interface (``ss -ltn`` shows ``*:9001``), so it is never plain.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = False
    address: str = "127.0.0.1"
    port: Port = 9001
    # Serve wss:// with the TLS group's certificate and key.
    tls: bool = False


class LimitsSettings(BaseModel):
    """Bounds that keep one slow or hostile client from exhausting the broker."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_packet_size: int = Field(
        default=65_536, ge=MAX_PAYLOAD_BYTES + _PACKET_OVERHEAD, le=_MQTT_MAX_PACKET
    )
    # Per client, beyond the messages in flight: an offline lamp's queued glows, and the
    # relay's queued touches while it restarts (so this is also the most touches a relay outage
    # can hold for all lamps together; beyond it Mosquitto drops new ones).
    max_queued_messages: int = Field(default=10_000, ge=1)
    max_queued_bytes: int = Field(default=8 * 1024 * 1024, ge=1)
    # How Mosquitto saves its database (queued messages, sessions, retained states).
    # False (the default): every autosave_interval_seconds — Mosquitto saves once the interval
    # has *passed*, so 1 means about every 2 s, whatever the load. A broker killed between two
    # saves forgets what it acknowledged since the last; touchlamp's lamps and relay cover that
    # end to end: the lamp's outbox keeps a touch, and the relay tracks its glows, until their
    # connection has outlived two keepalives (RELIABILITY.md), then the touch is sent again and
    # forwarded again. Hence the upper bound: a save must come well inside the relay's window
    # (two keepalives, 60 s by default). True: save after every change (each pass of the main
    # loop that changed anything) — a kill 20 ms after a PUBACK loses nothing even without the
    # lamps' help (broker/render.py), but every save rewrites and fsyncs the whole database:
    # measured (BENCHMARKS.md), a relay then carries ~600 touches/s instead of ~2,000, and a
    # broker with 1,000 lamps cannot carry 200 touches/s at all. For brokers whose clients
    # are not touchlamp lamps (no outbox), or that carry a few touches a day.
    save_every_change: bool = False
    autosave_interval_seconds: int = Field(default=1, ge=1, le=30)
    # A session nobody resumes for this long is dropped (Mosquitto's form: 12h, 30d, 1w, 1m, 1y).
    persistent_client_expiration: str = Field(default="30d", pattern=r"^[1-9][0-9]*[hdwmy]$")


class BrokerSettings(BaseSettings):
    """Everything touchlamp needs to render a Mosquitto config and run it."""

    model_config = SettingsConfigDict(
        env_prefix="TOUCHLAMP_BROKER_", env_nested_delimiter="__", extra="forbid"
    )

    listeners: list[ListenerSettings] = Field(
        default_factory=lambda: [ListenerSettings()], min_length=1
    )
    topic_root: str = DEFAULT_ROOT
    # Config, credentials and Mosquitto's data (launcher only; an installed broker uses Debian's).
    state_dir: Path = Path("/var/lib/touchlamp-broker")
    tls: TlsSettings = TlsSettings()
    websockets: WebsocketsSettings = WebsocketsSettings()
    limits: LimitsSettings = LimitsSettings()
    mosquitto_path: Path = Path("/usr/sbin/mosquitto")
    plugin_path: Path = Field(default_factory=default_plugin_path)
    # The account Mosquitto switches to when started as root (its `user` option).
    run_as_user: str = "mosquitto"
    # The relay logs in with these (TOUCHLAMP_RELAY_ADMIN__USERNAME, …_MQTT__USERNAME; DEPLOY.md).
    admin_username: str = "admin"
    relay_username: str = "relay"

    @field_validator("topic_root")
    @classmethod
    def _valid_root(cls, value: str) -> str:
        Topics(value)  # raises ProtocolError (a ValueError) naming what is wrong
        return value

    @field_validator("run_as_user", "admin_username", "relay_username")
    @classmethod
    def _valid_username(cls, value: str) -> str:
        if not _USERNAME.fullmatch(value):
            raise ValueError("use 1-64 characters from A-Z, a-z, 0-9, '_' and '-'")
        return value

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        if self.admin_username == self.relay_username:
            raise ValueError(
                "admin_username and relay_username are the same: give the relay its own name"
            )
        ports: dict[int, str] = {}
        named = [(f"listeners[{i}]", item.port) for i, item in enumerate(self.listeners)]
        if self.tls.enabled:
            named.append(("tls", self.tls.port))
        if self.websockets.enabled:
            named.append(("websockets", self.websockets.port))
        for name, port in named:
            if port in ports:
                raise ValueError(f"{name} and {ports[port]} both use port {port}: choose another")
            ports[port] = name
        if self.websockets.enabled and not self.websockets.tls:
            raise ValueError(
                "plain websockets would serve unencrypted MQTT on every interface (Mosquitto "
                "2.0.11 ignores the websockets address): set TOUCHLAMP_BROKER_WEBSOCKETS__TLS=true "
                f"with the TLS certificate: {_TLS_FIX}"
            )
        if self.websockets.enabled and self.websockets.tls and not self.tls.enabled:
            raise ValueError(
                "websockets.tls needs the TLS certificate: set TOUCHLAMP_BROKER_TLS__ENABLED=true "
                "with its certfile and keyfile"
            )
        return self
