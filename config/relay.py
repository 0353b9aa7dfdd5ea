"""Settings of the relay: ``RelaySettings`` (prefix ``TOUCHLAMP_RELAY_``, nested with ``__``).

Load them with ``load_settings(RelaySettings, env_file=...)``; every field is described in
``config/relay.env.example``. Groups:

- ``mqtt`` — how the relay reaches the broker as the relay role (``…_MQTT__HOST``,
  ``…_MQTT__PASSWORD`` or ``…_MQTT__PASSWORD_FILE``), its session and paho's flow-control bounds;
- ``admin`` — the broker's dynamic-security admin login, used only by ``relay lamp add/remove``;
- ``public`` — the broker address printed in enrollment tokens (what lamps dial, which is often
  not what the relay dials);
- ``forwarding`` — glow expiry and the mutual window;
- ``rate_limit`` — the per-lamp token bucket;
- ``pairing`` — codes, group size and the guessing lockout (see server/pairing.py).

Top-level: ``state_dir``, ``store_url`` (a SQLite path, or a ``postgresql://`` DSN), ``queue_size``
and the metrics endpoint. Every group forbids unknown fields, so a misspelt variable stops
start-up instead of being ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints
from pydantic_settings import (
    BaseSettings,
    NestedSecretsSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from touchlamp.config.mqtt import BrokerConnection, BrokerLogin, Host, service_state_dir

__all__ = [
    "AdminSettings",
    "ForwardingSettings",
    "MqttSettings",
    "PairingSettings",
    "PublicBrokerSettings",
    "RateLimitSettings",
    "RelaySettings",
    "default_state_dir",
]

_GROUP = ConfigDict(extra="forbid", frozen=True)

Port = Annotated[int, Field(ge=1, le=65535)]
# MQTT client ids and share names end up in topic filters and broker logs: keep them plain.
Word = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


def default_state_dir() -> Path:
    """``$STATE_DIRECTORY`` (systemd's ``StateDirectory=``), else
    ``$XDG_STATE_HOME/touchlamp-relay``."""
    return service_state_dir("touchlamp-relay")


class MqttSettings(BrokerConnection):
    """How the relay reaches the broker. ``client_id`` must be unique per relay process: the
    broker keeps that id's persistent session (and the touches queued in it) across restarts."""

    # The broker's relay login (``touchlamp broker`` creates "relay"; its password is in the
    # broker's credentials/relay.password).
    username: str = "relay"
    # The broker binds each relay login to one client id (SECURITY.md): "relay" to this one, a
    # login from ``touchlamp broker relay add NAME`` to NAME. Another id is refused.
    client_id: Word = "touchlamp-relay"
    # Relays with the same share name split the touches between them ($share/<name>/…).
    share_name: Word = "touchlamp-relay"
    keepalive_seconds: int = Field(default=30, ge=5, le=65535)
    # How long the broker keeps queueing touches for a stopped relay (MQTT 5 session expiry).
    session_expiry_seconds: int = Field(default=7 * 24 * 3600, ge=1, le=2**32 - 1)
    # paho's outgoing window. Its default of 20 plus a growing queue is quadratic (ARCHITECTURE.md),
    # and any window makes paho scan every queued message on each PUBACK; 0 means no window
    # (measured: a third less CPU per touch), so ``max_queued`` alone bounds what is outstanding.
    # paho ignores the broker's Receive Maximum: Mosquitto does not enforce it for QoS 1, but a
    # broker that does needs this set to at most its Receive Maximum.
    max_inflight: int = Field(default=0, ge=0, le=65535)
    # paho's outgoing queue bound; when it is full the worker waits instead of growing it.
    max_queued: int = Field(default=20_000, ge=1)
    reconnect_max_seconds: float = Field(default=60.0, gt=0.0)


class AdminSettings(BrokerLogin):
    """The broker's dynamic-security admin login (``relay lamp add/remove`` create and revoke
    lamp credentials with it, without restarting the broker). It connects where ``mqtt`` does."""

    # ``touchlamp broker`` creates "admin"; its password is in the broker's
    # credentials/admin.password.
    username: str = "admin"


class PublicBrokerSettings(BaseModel):
    """The broker address lamps dial, printed in enrollment tokens (defaults: ``mqtt``'s)."""

    model_config = _GROUP

    host: Host | None = None
    port: Port | None = None
    tls: bool | None = None
    # The CA that signed the broker's certificate, embedded in tokens so lamps can pin it.
    ca_file: Path | None = None


class ForwardingSettings(BaseModel):
    model_config = _GROUP

    # A glow older than this is not worth showing: the broker drops it from an offline lamp's
    # queue (MQTT 5 message expiry).
    glow_expiry_seconds: int = Field(default=6 * 3600, ge=1, le=2**32 - 1)
    # Two members touching within this many seconds of each other make a *mutual* touch.
    mutual_window_seconds: float = Field(default=60.0, ge=0.0)
    # De-duplication records are kept this long (longer than any lamp keeps a touch queued).
    dedup_retention_hours: float = Field(default=7 * 24.0, gt=0.0)


class RateLimitSettings(BaseModel):
    """Per-lamp token bucket: ``burst`` touches at once, then ``per_second`` on average."""

    model_config = _GROUP

    per_second: float = Field(default=1.0, gt=0.0)
    burst: int = Field(default=20, ge=1)


class PairingSettings(BaseModel):
    """Pairing by code (server/pairing.py explains the guessing arithmetic behind the defaults)."""

    model_config = _GROUP

    code_length: int = Field(default=8, ge=6, le=8)
    code_ttl_seconds: float = Field(default=600.0, gt=0.0)
    max_group_size: int = Field(default=8, ge=2, le=32)
    # Live (unused, unexpired) codes one lamp may hold at once.
    max_codes_per_lamp: int = Field(default=3, ge=1)
    # A lamp that sends this many wrong codes within ``lockout_seconds`` is refused until the
    # oldest of them is ``lockout_seconds`` old.
    lockout_failures: int = Field(default=5, ge=1)
    lockout_seconds: float = Field(default=900.0, gt=0.0)
    # All lamps together: this many wrong codes per ``global_window_seconds``, then every join
    # is refused ("busy") until the window moves on.
    global_failures: int = Field(default=60, ge=1)
    global_window_seconds: float = Field(default=3600.0, gt=0.0)


class RelaySettings(BaseSettings):
    """One relay process. Everything has a default except the broker passwords."""

    model_config = SettingsConfigDict(
        env_prefix="TOUCHLAMP_RELAY_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    state_dir: Path = Field(default_factory=default_state_dir)
    # A SQLite file path, or a postgresql://… DSN (a secret: it may hold a password).
    store_url: SecretStr | None = None
    mqtt: MqttSettings = MqttSettings()
    admin: AdminSettings = AdminSettings()
    public: PublicBrokerSettings = PublicBrokerSettings()
    forwarding: ForwardingSettings = ForwardingSettings()
    rate_limit: RateLimitSettings = RateLimitSettings()
    pairing: PairingSettings = PairingSettings()
    # Messages taken from the broker but not yet handled. The relay asks the broker for at most
    # this many unacknowledged deliveries (MQTT 5 Receive Maximum), which bounds it.
    queue_size: int = Field(default=1000, ge=2, le=65535)
    metrics_host: Host = "127.0.0.1"
    # 0 turns the /metrics and /healthz endpoint off.
    metrics_port: int = Field(default=0, ge=0, le=65535)
    # A bad payload from one lamp is logged at most once per this many seconds.
    bad_payload_log_seconds: float = Field(default=60.0, ge=0.0)

    @property
    def store_location(self) -> str:
        """What ``open_store`` gets: the configured URL, else ``state_dir/relay.sqlite3``."""
        if self.store_url is not None:
            return self.store_url.get_secret_value()
        return str(self.state_dir / "relay.sqlite3")

    @property
    def public_host(self) -> str:
        return self.public.host or self.mqtt.host

    @property
    def public_tls(self) -> bool:
        return self.mqtt.tls if self.public.tls is None else self.public.tls

    @property
    def public_port(self) -> int:
        if self.public.port is not None:
            return self.public.port
        if self.public.host is None and self.public.tls is None:
            return self.mqtt.effective_port
        return 8883 if self.public_tls else 1883

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],  # noqa: ARG003  pydantic-settings' signature
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Nested secret files, so systemd's ``LoadCredential=touchlamp_relay_mqtt__password:…``
        # fills ``mqtt.password`` like the environment variable of the same name would.
        nested_secrets = NestedSecretsSettingsSource(file_secret_settings)
        return init_settings, env_settings, dotenv_settings, nested_secrets
