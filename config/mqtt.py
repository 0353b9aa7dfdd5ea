"""What the lamp's and the relay's settings share: a broker login and a connection to it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, model_validator

from touchlamp.config.common import read_secret_file
from touchlamp.protocol.topics import DEFAULT_ROOT

__all__ = ["BrokerConnection", "BrokerLogin", "Host", "TopicRoot", "service_state_dir"]

Host = Annotated[str, StringConstraints(min_length=1, max_length=253)]
TopicRoot = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")]


def service_state_dir(name: str) -> Path:
    """``$STATE_DIRECTORY`` (systemd's ``StateDirectory=``), else ``$XDG_STATE_HOME/<name>``."""
    systemd = os.environ.get("STATE_DIRECTORY")
    if systemd:
        # systemd lists several directories separated by ':' when the unit asks for several.
        return Path(systemd.split(":")[0])
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / name


class BrokerLogin(BaseModel):
    """A password that comes from ``password`` or from the file named by ``password_file``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    password: SecretStr | None = None
    password_file: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _read_password_file(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("password_file") in (None, ""):
            return data
        from_file = read_secret_file(Path(data["password_file"]))
        given = data.get("password")
        if isinstance(given, SecretStr):
            given = given.get_secret_value()
        # ``load_settings`` may already have put the file's content into ``password``.
        if given not in (None, "", from_file):
            raise ValueError("set either password or password_file, not both")
        return {**data, "password": from_file}


class BrokerConnection(BrokerLogin):
    """Where the broker is and how to stay connected to it (subclasses set the defaults)."""

    host: Host = "localhost"
    port: int | None = Field(default=None, ge=1, le=65535)
    topic_root: TopicRoot = DEFAULT_ROOT
    tls: bool = False
    ca_file: Path | None = None
    keepalive_seconds: int = Field(default=60, ge=5, le=65535)
    # How long the broker keeps this client's subscriptions and queued messages while it is away.
    session_expiry_seconds: int = Field(default=2 * 24 * 3600, ge=1, le=2**32 - 1)
    reconnect_min_seconds: float = Field(default=1.0, gt=0.0)
    reconnect_max_seconds: float = Field(default=120.0, gt=0.0)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.reconnect_max_seconds < self.reconnect_min_seconds:
            raise ValueError(
                f"reconnect_max_seconds ({self.reconnect_max_seconds}) must not be below "
                f"reconnect_min_seconds ({self.reconnect_min_seconds})"
            )
        if self.ca_file is not None and not self.tls:
            raise ValueError("ca_file is set but tls is off: set tls=true to use it")
        return self

    @property
    def effective_port(self) -> int:
        """``port``, else 8883 with TLS and 1883 without (the IANA ports for MQTT)."""
        if self.port is not None:
            return self.port
        return 8883 if self.tls else 1883
