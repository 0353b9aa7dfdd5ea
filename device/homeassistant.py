"""The lamp in its home's Home Assistant: a second MQTT connection, to the home's broker.

``HomeAssistantBridge`` publishes the lamp's discovery configs and states there (see
``homeassistant_discovery``) and turns the two command topics it subscribes to into
``LampAgent.touch()`` and ``LampAgent.set_quiet_now()``.

Apart from the lamp's own path, by construction. The bridge has its own paho client (a fresh
one per connection, as the lamp's link), its own thread and its own ``Backoff``. It meets the
lamp in three places only, none of which can wait on the home broker:

- the agent's listener puts each piece of news on the bridge's queue (``SimpleQueue.put``
  never blocks) and returns;
- a command calls ``touch()`` / ``set_quiet_now()``, which put an event on the agent's queue;
- ``status()`` reads the agent's immutable snapshot.

So a home broker that is down, slow, refusing the login or black-holed (it takes the TCP
connection and never answers: given up after ``connect_timeout_seconds``) only delays Home
Assistant. paho connects from its own network thread (``connect_async``), so not even the
bridge's thread waits on the network.

What the home broker can make the lamp do (SECURITY.md): send a touch (no more often than
``min_touch_interval_seconds``) and turn quiet-now on or off; nothing else is subscribed.
A command that is not exactly ``PRESS`` / ``ON`` / ``OFF``, or that arrives retained (it
would repeat at every reconnect), is counted in ``bad_commands`` and logged once.

Which discovery configs this lamp published is kept in ``state_dir/homeassistant.json``, so
that a member who left the group, a disabled integration (``enabled=false``) and
``touchlamp device uninstall`` remove exactly those (empty retained messages): the record and
the removal are device/homeassistant_removal.py's, the home broker's client
device/homeassistant_client.py's, and which bridge a lamp's settings ask for
device/homeassistant_switch.py's. What is left here, past 500 lines, is one class: the bridge's
thread and the state only it touches (the connection, its backoff, what was published, the
commands), which split further would be one state machine spread over files.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from touchlamp.config.device import HomeAssistantSettings
from touchlamp.device.homeassistant_client import (
    CANNOT_CONNECT,
    LOGIN_REFUSED,
    close_client,
    home_client,
    home_tls_context,
    why_unreachable,
)
from touchlamp.device.homeassistant_discovery import (
    AVAILABLE,
    COMMAND_PRESS,
    NOT_AVAILABLE,
    STATE_OFF,
    STATE_ON,
    DiscoveryDevice,
    HomeTopics,
    discovery_configs,
    encode_config,
    event_payload,
    on_off,
)
from touchlamp.device.homeassistant_removal import read_record, write_record
from touchlamp.device.homeassistant_settings import default_configuration_url
from touchlamp.device.status import GlowNews, LampListener, LampNews, LampStatus, StatusChanged
from touchlamp.mqtt.backoff import Backoff
from touchlamp.mqtt.client import Will

__all__ = ["HomeAssistantBridge", "LampHandle"]

logger = logging.getLogger(__name__)

# paho keeps at most this many messages of a connection that stopped answering; the states
# are retained and sent again in full on the next connection, so nothing is lost by the cap.
_MAX_QUEUED = 200


class LampHandle(Protocol):
    """What the bridge needs of a lamp (``LampAgent`` has it)."""

    @property
    def lamp_id(self) -> str: ...

    def status(self) -> LampStatus: ...

    def add_listener(self, listener: LampListener) -> None: ...

    def touch(self) -> None: ...

    def set_quiet_now(self, on: bool) -> None: ...


def software_version() -> str:
    try:
        return importlib.metadata.version("touchlamp")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# ---- jobs for the bridge's thread ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Connected:
    generation: int


@dataclass(frozen=True, slots=True)
class _Refused:
    generation: int
    reason: str
    login: bool


@dataclass(frozen=True, slots=True)
class _Lost:
    generation: int
    reason: str


@dataclass(frozen=True, slots=True)
class _Command:
    generation: int
    topic: str
    payload: bytes
    retained: bool


@dataclass(frozen=True, slots=True)
class _Stop:
    pass


_Job = LampNews | _Connected | _Refused | _Lost | _Command | _Stop


class HomeAssistantBridge:
    """One lamp's presence in Home Assistant: ``start()``, then ``stop()`` (any thread)."""

    def __init__(
        self,
        settings: HomeAssistantSettings,
        lamp: LampHandle,
        *,
        state_dir: Path,
        configuration_url: str | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if settings.host is None:
            raise ValueError("the Home Assistant bridge needs homeassistant.host")
        self._settings = settings
        self._host = settings.host
        self._lamp = lamp
        self._state_dir = state_dir
        self._monotonic = monotonic
        self._topics = HomeTopics(
            lamp.lamp_id,
            topic_root=settings.topic_root,
            discovery_prefix=settings.discovery_prefix,
        )
        self._url = (
            configuration_url
            or settings.configuration_url
            or default_configuration_url(settings.page_port)
        )
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._backoff = Backoff(
            minimum=settings.reconnect_min_seconds,
            maximum=settings.reconnect_max_seconds,
            rng=rng or random.Random(),
        )
        self._thread: threading.Thread | None = None
        self._tls = home_tls_context(settings) if settings.tls else None
        # The bridge thread's own state.
        self._generation = 0
        self._client: mqtt.Client | None = None
        self._connected = False
        self._connack_deadline: float | None = None
        self._reconnect_at: float | None = None
        self._published: dict[str, bytes] = {}  # retained topic -> payload on this connection
        self._record: list[str] | None = None  # what STATE_DIR/homeassistant.json lists
        self._last_touch_at: float | None = None
        self._warned_login = False
        self._warned_unreachable = False
        self._bad_logged = False
        # Read from other threads (ints and bools: a torn read is impossible).
        self.bad_commands = 0
        """Commands refused: not exactly PRESS / ON / OFF, retained, or pressed too often."""
        self.connections = 0
        """Connections the home broker accepted so far."""
        self.attempts = 0
        """Connections tried so far."""

    @property
    def topics(self) -> HomeTopics:
        return self._topics

    @property
    def connected(self) -> bool:
        return self._connected

    # ---- any thread ----

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the Home Assistant bridge is already running")
        self._lamp.add_listener(self._jobs.put)
        self._thread = threading.Thread(
            target=self._run, name=f"homeassistant-{self._lamp.lamp_id}", daemon=True
        )
        self._thread.start()

    def stop(self, *, timeout: float = 5.0) -> None:
        """Publish ``offline``, disconnect and end the thread (waits at most ``timeout``)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._jobs.put(_Stop())
        thread.join(timeout)
        if thread.is_alive():
            logger.warning(
                "lamp %s: the Home Assistant connection did not close within %g s; left behind",
                self._lamp.lamp_id,
                timeout,
            )

    # ---- the bridge's thread ----

    def _run(self) -> None:
        self._reconnect_at = self._monotonic()
        while True:
            due = [t for t in (self._reconnect_at, self._connack_deadline) if t is not None]
            timeout = None if not due else max(0.0, min(due) - self._monotonic())
            if timeout == 0.0:
                self._timers()  # first: a steady stream of news must not starve them
                continue
            try:
                job = self._jobs.get(timeout=timeout)
            except queue.Empty:
                self._timers()
                continue
            if isinstance(job, _Stop):
                self._shut_down()
                return
            try:
                self._handle(job)
            except Exception:
                logger.exception("lamp %s: the Home Assistant bridge failed", self._lamp.lamp_id)

    def _timers(self) -> None:
        now = self._monotonic()
        if self._connack_deadline is not None and now >= self._connack_deadline:
            self._connack_deadline = None
            self._drop_connection(f"no answer within {self._settings.connect_timeout_seconds:g} s")
        if self._reconnect_at is not None and now >= self._reconnect_at:
            self._reconnect_at = None
            self._connect()

    def _handle(self, job: _Job) -> None:
        match job:
            case _Connected(generation=generation) if generation == self._generation:
                self._on_connected()
            case _Refused(generation=generation, reason=reason, login=login) if (
                generation == self._generation
            ):
                self._on_refused(reason, login=login)
            case _Lost(generation=generation, reason=reason) if generation == self._generation:
                self._drop_connection(reason)
            case _Command(generation=generation) if generation == self._generation:
                self._on_command(job)
            case GlowNews():
                self._on_glow(job)
            case StatusChanged(status=status):
                self._publish_status(status)
            case _:
                pass  # from a connection given up already

    def _connect(self) -> None:
        settings = self._settings
        self.attempts += 1
        self._generation += 1
        generation = self._generation
        client = self._new_client(generation)
        try:
            client.connect_async(self._host, settings.effective_port, settings.keepalive_seconds)
        except (OSError, ValueError) as error:
            self._retry_later(f"cannot connect ({error})")
            return
        self._client = client
        self._connack_deadline = self._monotonic() + settings.connect_timeout_seconds
        client.loop_start()

    def _new_client(self, generation: int) -> mqtt.Client:
        settings = self._settings
        client = home_client(
            settings,
            f"touchlamp-{self._lamp.lamp_id}",
            tls=self._tls,
            connect_timeout=settings.connect_timeout_seconds,
            will=Will(self._topics.availability, NOT_AVAILABLE),
            max_queued=_MAX_QUEUED,
        )
        jobs = self._jobs

        def on_connect(
            _client: mqtt.Client,
            _userdata: object,
            _flags: mqtt.ConnectFlags,
            reason: ReasonCode,
            _properties: object,
        ) -> None:
            if reason.is_failure:
                login = reason.value in LOGIN_REFUSED
                jobs.put(_Refused(generation, str(reason), login))
            else:
                jobs.put(_Connected(generation))

        def on_connect_fail(_client: mqtt.Client, _userdata: object) -> None:
            jobs.put(_Lost(generation, CANNOT_CONNECT))

        def on_disconnect(
            _client: mqtt.Client,
            _userdata: object,
            _flags: mqtt.DisconnectFlags,
            reason: ReasonCode,
            _properties: object,
        ) -> None:
            jobs.put(_Lost(generation, str(reason)))

        def on_message(_client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
            jobs.put(_Command(generation, message.topic, bytes(message.payload), message.retain))

        client.on_connect = on_connect
        client.on_connect_fail = on_connect_fail
        client.on_disconnect = on_disconnect
        client.on_message = on_message
        return client

    def _on_connected(self) -> None:
        client = self._client
        assert client is not None
        self._connack_deadline = None
        self._connected = True
        self._warned_login = False
        self._warned_unreachable = False
        self._backoff.reset()
        self.connections += 1
        logger.info(
            "lamp %s: connected to the home broker %s:%d for Home Assistant",
            self._lamp.lamp_id,
            self._host,
            self._settings.effective_port,
        )
        client.subscribe([(topic, 1) for topic in self._topics.commands])
        self._published = {}
        status = self._lamp.status()
        self._publish_retained(self._topics.availability, AVAILABLE.encode())
        self._publish_status(status, everything=True)

    def _on_refused(self, reason: str, *, login: bool) -> None:
        if login and not self._warned_login:
            self._warned_login = True
            logger.warning(
                "lamp %s: the home broker %s:%d refused the login (%s): check "
                "TOUCHLAMP_DEVICE_HOMEASSISTANT__USERNAME and TOUCHLAMP_DEVICE_HOMEASSISTANT__"
                "PASSWORD (or TOUCHLAMP_DEVICE_HOMEASSISTANT__PASSWORD_FILE) against the home "
                "broker's logins; the lamp keeps trying, slowly",
                self._lamp.lamp_id,
                self._host,
                self._settings.effective_port,
                reason,
            )
        self._drop_connection(f"refused: {reason}", quiet=login)

    def _drop_connection(self, reason: str, *, quiet: bool = False) -> None:
        was_connected = self._connected
        self._connected = False
        self._connack_deadline = None
        client, self._client = self._client, None
        self._generation += 1  # whatever the old client still reports is ignored
        if client is not None:
            close_client(client)
        if not quiet:
            # Once per outage: a home broker away for hours must not fill the lamp's log.
            level = logging.DEBUG if self._warned_unreachable else logging.WARNING
            if level == logging.WARNING and reason == CANNOT_CONNECT:
                reason = why_unreachable(self._settings, self._host, tls=self._tls)
            self._warned_unreachable = True
            logger.log(
                level,
                "lamp %s: %s the home broker %s:%d for Home Assistant (%s); retrying with "
                "backoff, the lamp works as ever",
                self._lamp.lamp_id,
                "lost" if was_connected else "cannot reach",
                self._host,
                self._settings.effective_port,
                reason,
            )
        self._retry_later(reason)

    def _retry_later(self, reason: str) -> None:
        delay = self._backoff.next_delay()
        logger.debug(
            "lamp %s: home broker: %s; retrying in %.1f s", self._lamp.lamp_id, reason, delay
        )
        self._reconnect_at = self._monotonic() + delay

    def _shut_down(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        if self._connected:
            # A clean stop sends no will: say it ourselves, so the entities show unavailable.
            info = client.publish(self._topics.availability, NOT_AVAILABLE, qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout=2.0)
        self._connected = False
        close_client(client)

    # ---- what the lamp says ----

    def _on_glow(self, glow: GlowNews) -> None:
        if not self._connected or self._client is None:
            return  # an event is about now: one missed while away is not replayed
        members = self._lamp.status().members
        self._client.publish(self._topics.touch_received, event_payload(glow, members), qos=1)

    def _publish_status(self, status: LampStatus, *, everything: bool = False) -> None:
        if not self._connected:
            return
        topics = self._topics
        device = DiscoveryDevice(
            lamp_id=status.lamp_id,
            name=status.name,
            sw_version=software_version(),
            configuration_url=self._url,
        )
        configs = discovery_configs(device, topics, status.members)
        states = {
            topics.quiet: on_off(status.quiet_now),
            topics.missed_touches: str(status.missed_touches).encode(),
            **{topics.member_online(m.id): on_off(m.online) for m in status.members},
        }
        current = {*configs, *states, topics.availability}
        for topic in sorted(set(self._read_record()) - current):
            self._publish_retained(topic, b"")  # a member who left the group
        for topic, config in configs.items():
            self._publish_retained(topic, encode_config(config), everything=everything)
        for topic, payload in states.items():
            self._publish_retained(topic, payload, everything=everything)
        self._write_record(current)

    def _publish_retained(self, topic: str, payload: bytes, *, everything: bool = True) -> None:
        if not everything and self._published.get(topic) == payload:
            return
        client = self._client
        if client is None:
            return
        client.publish(topic, payload, qos=1, retain=True)
        self._published[topic] = payload

    # ---- what Home Assistant asks ----

    def _on_command(self, command: _Command) -> None:
        topics = self._topics
        if command.retained:
            self._refuse(command, "retained (it would repeat at every reconnect)")
        elif command.topic == topics.send_touch and command.payload == COMMAND_PRESS.encode():
            now = self._monotonic()
            interval = self._settings.min_touch_interval_seconds
            if self._last_touch_at is not None and now - self._last_touch_at < interval:
                self._refuse(command, f"pressed again within {interval:g} s")
                return
            self._last_touch_at = now
            self._lamp.touch()
        elif command.topic == topics.quiet_set and command.payload in (
            STATE_ON.encode(),
            STATE_OFF.encode(),
        ):
            self._lamp.set_quiet_now(command.payload == STATE_ON.encode())
        else:
            self._refuse(command, "not a command of this lamp")

    def _refuse(self, command: _Command, why: str) -> None:
        self.bad_commands += 1
        level = logging.DEBUG if self._bad_logged else logging.WARNING
        self._bad_logged = True
        logger.log(
            level,
            "lamp %s: ignored %r on %s from the home broker: %s (expected %s on %s or %s/%s on "
            "%s; further ones are counted, not logged)",
            self._lamp.lamp_id,
            command.payload[:40],
            command.topic,
            why,
            COMMAND_PRESS,
            self._topics.send_touch,
            STATE_ON,
            STATE_OFF,
            self._topics.quiet_set,
        )

    # ---- the record of what was published ----

    def _read_record(self) -> list[str]:
        # Read once, then kept here: every glow changes the status, the record rarely.
        if self._record is None:
            self._record = read_record(self._state_dir)
        return self._record

    def _write_record(self, topics: Iterable[str]) -> None:
        wanted = sorted(set(topics))
        if wanted == self._read_record():
            return
        try:
            write_record(self._state_dir, wanted)
            self._record = wanted
        except OSError as error:
            logger.warning(
                "lamp %s: cannot record the Home Assistant topics in %s (%s); `device "
                "uninstall` may leave member entities behind",
                self._lamp.lamp_id,
                self._state_dir,
                error,
            )
