"""Running a real relay in the test process against the real broker fixture and a real store."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from tests.relay.lamps import Endpoint, TestLamp
from tests.support.broker import BrokerLike
from tests.support.relay import running_relay as run_relay
from touchlamp.config.relay import RelaySettings
from touchlamp.server.relay import Relay
from touchlamp.server.store import Store

__all__ = ["BrokerLike", "Site", "running_relay"]


class Site:
    """One test's world: a broker of its own, a store, and its lamps."""

    def __init__(self, broker: BrokerLike, store: Store) -> None:
        self.broker = broker
        self.store = store
        # The broker's ACLs name the topic root: the relay and the lamps use the broker's.
        self.root = broker.topics.root
        self.endpoint = Endpoint(host=broker.host, port=broker.port, root=self.root)
        self.relay_client_id = f"relay-{secrets.token_hex(4)}"
        self.lamps: list[TestLamp] = []

    def settings(self, **overrides: Any) -> RelaySettings:
        """Relay settings for this site; ``overrides`` are top-level groups or fields."""
        username, password = self.broker.relay_login(self.relay_client_id)
        mqtt = {
            "host": self.broker.host,
            "port": self.broker.port,
            "username": username,
            "password": password,
            "client_id": self.relay_client_id,
            "topic_root": self.root,
            "reconnect_min_seconds": 0.1,
            "reconnect_max_seconds": 1.0,
        }
        mqtt.update(overrides.pop("mqtt", {}))
        values: dict[str, Any] = {
            "mqtt": mqtt,
            "rate_limit": {"per_second": 1000.0, "burst": 10_000},
            "bad_payload_log_seconds": 0.0,
        }
        values.update(overrides)
        return RelaySettings(**values)

    def lamp(
        self, lamp_id: str, *, register: bool = True, connect: bool = True, **kwargs: Any
    ) -> TestLamp:
        """A lamp with broker credentials; ``register`` also adds it to the relay's store."""
        password = self.broker.add_lamp(lamp_id)
        if register:
            self.store.add_lamp(lamp_id, name=lamp_id, color="#336699", now_ms=0)
        lamp = TestLamp(self.endpoint, lamp_id, password, **kwargs)
        if connect:
            lamp.connect()
        self.lamps.append(lamp)
        return lamp

    def pair(self, *lamps: TestLamp, name: str = "home") -> None:
        self.store.create_group(
            [lamp.lamp_id for lamp in lamps], name=name, group_id=f"g-{secrets.token_hex(3)}"
        )

    def close(self) -> None:
        for lamp in self.lamps:
            lamp.disconnect()


def running_relay(
    site: Site, *, clock: Callable[[], float] = time.time, **overrides: Any
) -> AbstractContextManager[Relay]:
    """The tests' relay runner with ``site.settings(**overrides)`` on the site's store."""
    return run_relay(site.settings(**overrides), site.store, clock=clock)
