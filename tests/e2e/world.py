"""A test's whole world: the broker fixture, a real relay on a real SQLite store, and simulated
lamps (the real agent on gpiozero's mock pins), each test under a topic root of its own."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from pydantic import SecretStr

from tests.support.broker import BrokerLike
from tests.support.relay import running_relay
from touchlamp.config.device import DeviceSettings, MqttSettings
from touchlamp.config.looks import LookSettings
from touchlamp.config.relay import RelaySettings
from touchlamp.device.looks import Rgb
from touchlamp.device.sim import Simulator
from touchlamp.device.web import WebServer
from touchlamp.server.relay import Relay
from touchlamp.server.store import Store, open_store

__all__ = ["HOLD_SECONDS", "BrokerLike", "World", "same_hue", "served_page"]

HOLD_SECONDS = 5.0
"""How long the test lamps must be held to pick a colour (1 s by default)."""


def same_hue(shown: Rgb, color: str, *, gamma: float, tolerance: float = 0.03) -> bool:
    """Whether PWM values ``shown`` are ``color`` (a perceived ``#rrggbb``) at some brightness."""
    perceived = [channel ** (1 / gamma) for channel in shown]
    level = max(perceived)
    if level < 0.2:
        return False
    target = Rgb.from_hex(color)
    top = target.max_channel()
    return all(
        abs(channel / level - want / top) <= tolerance
        for channel, want in zip(perceived, target, strict=True)
    )


class World:
    """Lamps registered with the relay's store and the broker; ``relay()`` runs the relay."""

    def __init__(self, broker: BrokerLike, directory: Path) -> None:
        self.broker = broker
        self.directory = directory
        # The broker's ACL (dynamic security) allows lamps and relay under its own root only.
        self.root = broker.topics.root
        self.store: Store = open_store(directory / "relay.sqlite3")

    def close(self) -> None:
        self.store.close()

    def relay_settings(self) -> RelaySettings:
        return RelaySettings(
            state_dir=self.directory / "relay",
            mqtt={
                "host": self.broker.host,
                "port": self.broker.port,
                "username": self.broker.relay_username,
                "password": self.broker.relay_password,
                "topic_root": self.root,
                "reconnect_min_seconds": 0.1,
                "reconnect_max_seconds": 1.0,
            },
            rate_limit={"per_second": 1000.0, "burst": 10_000},
        )

    def lamp(self, lamp_id: str, *, color: str, name: str | None = None) -> DeviceSettings:
        """A lamp known to the broker and the relay, as its settings file would describe it."""
        password = self.broker.add_lamp(lamp_id)
        self.store.add_lamp(lamp_id, name=name or lamp_id, color=color, now_ms=0)
        return DeviceSettings(
            lamp_id=lamp_id,
            name=name,
            color=color,
            state_dir=self.directory / lamp_id,
            # A test's press and release may be far apart on a loaded machine: a tap must not
            # turn into a hold (a colour pick) because of that.
            # No partner-online light: a test that waits for a glow starts from a dark lamp.
            looks=LookSettings(hold_seconds=HOLD_SECONDS, ambient_level=0.0),
            mqtt=MqttSettings(
                host=self.broker.host,
                port=self.broker.port,
                password=SecretStr(password),
                topic_root=self.root,
                reconnect_min_seconds=0.1,
                reconnect_max_seconds=1.0,
            ),
        )

    def env_file(self, settings: DeviceSettings) -> Path:
        """``settings`` written as the lamp's settings file (what ``--env-file`` reads)."""
        assert settings.mqtt.password is not None
        path = self.directory / f"{settings.lamp_id}.env"
        lines = {
            "LAMP_ID": settings.lamp_id,
            "COLOR": settings.color,
            "STATE_DIR": str(settings.state_dir),
            "MQTT__HOST": settings.mqtt.host,
            "MQTT__PORT": str(settings.mqtt.effective_port),
            "MQTT__PASSWORD": settings.mqtt.password.get_secret_value(),
            "MQTT__TOPIC_ROOT": settings.mqtt.topic_root,
        }
        path.write_text("".join(f"TOUCHLAMP_DEVICE_{k}='{v}'\n" for k, v in lines.items()))
        return path

    def pair(self, *lamp_ids: str) -> None:
        self.store.create_group(list(lamp_ids), name="home", group_id=f"g-{secrets.token_hex(3)}")

    def relay(self) -> AbstractContextManager[Relay]:
        return running_relay(self.relay_settings(), self.store)

    @contextmanager
    def simulator(self, *lamps: DeviceSettings) -> Iterator[Simulator]:
        simulator = Simulator(lamps=list(lamps))
        simulator.start()
        try:
            yield simulator
        finally:
            simulator.stop()


@contextmanager
def served_page(board: Simulator) -> Iterator[str]:
    """Serve ``board``'s page (from the server's own threads); yields the page's URL."""
    server = WebServer(board=board)
    url = server.start()
    try:
        yield url
    finally:
        server.stop()
