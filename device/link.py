"""The lamp's MQTT link: one persistent MQTT 5 session with the broker, an on-disk outbox for
touches, and small events for the lamp core. It knows topics and payloads (through
``touchlamp.protocol``) but not what a glow *means*.

Threads. The link has no thread of its own when it is part of a lamp: the lamp's loop
(device/agent.py) owns the paho client through ``mqtt/driver.py`` and calls ``serve`` whenever
it waits, so a glow goes from the socket to the core, and a touch from the sensor to the
socket, without crossing to another thread. paho's callbacks run inside ``serve``; the SQLite
work (outbox, seen glows) runs there too — an SD card's fsync (5-30 ms) delays a frame by as
much, far inside a keepalive. Other threads (the owner page, Home Assistant) may call
``request``, ``send_request`` and ``send_touch``: paho's publish is thread-safe, and the driver
wakes the loop to write it. Connecting blocks (DNS, TCP, TLS), so each attempt runs on a
short-lived thread of its own (``_dial``) and the loop takes the connection over when it is up.
``start()`` runs the same ``serve`` on a thread of the link's own, for a link without a lamp
(``touchlamp device pair``, tests).

paho quirks worked around, deliberately:

- paho's default ``clean_start=MQTT_CLEAN_START_FIRST_ONLY`` starts every *process* with a clean
  session, throwing away the glows the broker queued while the lamp rebooted. We always pass
  ``clean_start=False`` with a ``SessionExpiryInterval`` (0 would end the session at
  disconnect).
- paho keeps its own outgoing session (messages awaiting PUBACK) in memory only, and resends it
  on reconnect *after* ``on_connect`` — out of order with anything published in between. We use
  a fresh paho client for every connection and let the outbox be the only record: each
  connection publishes everything still queued, in seq order. A touch that reached the broker
  but whose PUBACK was lost is sent again; the relay drops it by (lamp, stream, seq).
- paho's reconnect backoff has no jitter: the link thread reconnects itself (``Backoff``), and
  stops for good when the broker refuses the credentials instead of hammering it.

Delivery rules, the first two found by the fault scenarios (tests/faults, RELIABILITY.md):

- **Confirmed, not just acknowledged.** Mosquitto 2.0 sends its PUBACK about a millisecond
  *before* it writes the message to disk, so a broker killed in that millisecond forgets a touch
  it acknowledged. A touch therefore leaves the outbox only once the connection that carried it
  has stayed up ``confirm_seconds`` after the PUBACK (default: two keepalives, the time a dead
  broker takes to be noticed); if the connection ends sooner, the next one sends it again and
  the relay drops the repeat by (lamp, stream, seq).
- **"No matching subscribers" is not delivered.** Mosquitto 2.0.11 does not keep shared
  subscriptions over a restart: until the relay reconnects and subscribes again, a touch is
  acknowledged with reason 0x10 and goes nowhere. The link keeps such a touch and sends it again
  with backoff until a relay takes it (or it expires in the outbox, counted).
- **Acknowledged once kept.** paho acknowledges a message when it reads it by default; the
  link uses ``manual_ack`` and acknowledges a glow only after recording it as seen and handing
  it to the sink, so a lamp killed in between gets it again (RELIABILITY.md, change 12).
- **One rule for the broker's reason codes** (mqtt/reasons.py): a refusal that retrying
  cannot fix stops the link; a touch refused for now waits like one nobody subscribed to.
- **Published, then written.** A touch gets its seq from the outbox in memory, goes to paho,
  and is written to disk (``synchronous=FULL``: an fsync, 5-30 ms on an SD card) right after, so
  the fsync is not in front of the publish. A crash in between loses a touch not yet published
  (made a millisecond earlier) and does not resend one that was; the seq is used up either way
  (device/outbox.py), so the next touch is never mistaken for a repeat. A PUBACK may come
  before the write: the outbox counts the touch as queued from the start.
"""

from __future__ import annotations

import collections
import logging
import random
import secrets
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from touchlamp.config.device import DeviceSettings
from touchlamp.device.clock import Clock, SystemClock, epoch_ms
from touchlamp.device.dedup import SeenTouches
from touchlamp.device.events import (
    Connected,
    Disconnected,
    Event,
    GlowReceived,
    GroupChanged,
    StateTrouble,
    TouchOutcome,
)
from touchlamp.device.glow_expiry import load_glow_expiry, save_glow_expiry
from touchlamp.device.link_api import LinkError, LinkSink, LinkTimeoutError, TouchReceipt
from touchlamp.device.outbox import Outbox, OutboxStats, StateFileError
from touchlamp.lifecycle import StopsOnExit
from touchlamp.mqtt import reasons
from touchlamp.mqtt.backoff import Backoff
from touchlamp.mqtt.client import Will, connect_properties, new_client, tls_for_file
from touchlamp.mqtt.client import properties as mqtt_properties
from touchlamp.mqtt.driver import MqttDriver
from touchlamp.mqtt.tls import why_untrusted
from touchlamp.mqtt.wakeup import Wakeup
from touchlamp.protocol import (
    DEFAULT_ROOT,
    Availability,
    Kind,
    PairAction,
    PairRequest,
    PairResponse,
    ProtocolError,
    Topics,
    decode_glow,
    decode_group,
    decode_pair_response,
    encode,
    encode_availability,
    validate_lamp_id,
)

__all__ = ["LampLink"]

logger = logging.getLogger(__name__)

_LOGIN_REFUSED = frozenset({0x86, 0x87})  # bad user name or password, not authorized
_PUMP_BATCH = 100
_CONFIRM_KEEPALIVES = 2.0  # a dead broker is noticed within two keepalives (no PINGRESP)
_EXCERPT_BYTES = 80
# The seen-glow ids are checkpointed (device/dedup.py) once glows pause this long, so not in
# front of the next glow of a run of them; or after this many, as SQLite would (~1000 pages).
_SEEN_CHECKPOINT_QUIET_SECONDS = 1.0
_SEEN_CHECKPOINT_IDS = 300

_Job = Callable[[], None]


@dataclass(slots=True)
class _Waiter:
    """One ``request`` waiting for the response with its correlation data."""

    done: threading.Event = field(default_factory=threading.Event)
    response: PairResponse | None = None


@dataclass(slots=True)
class _Attempt:
    """One connection attempt, made on a short-lived thread of its own (``_dial``): connecting
    blocks (DNS, TCP, TLS: up to the connect timeout), and the lamp's thread must keep drawing
    frames and reading the touch sensor meanwhile. Only ``_dial`` touches ``client`` until
    ``done``; then the lamp's thread takes it over (``_adopt``)."""

    generation: int
    client: mqtt.Client
    started: float
    done: bool = False
    error: OSError | ValueError | None = None


@dataclass(slots=True)
class _Connection:
    """One paho client's connection; replaced (never reused) after it ends."""

    generation: int
    client: mqtt.Client
    driver: MqttDriver
    started: float
    ready: bool = False  # subscribed, online published, outbox pumped: new touches go out now
    handed: dict[int, int] = field(default_factory=dict)  # paho mid → touch seq
    handed_up_to: int = -1  # highest seq published on this connection
    # Acknowledged with "no matching subscribers", or refused for now (mqtt/reasons.py).
    unrouted: set[int] = field(default_factory=set)
    probe: int | None = None  # the one unrouted touch sent again, awaiting its PUBACK


class LampLink(StopsOnExit):
    """The MQTT link of lamp ``lamp_id``. See the module docstring for threads and guarantees.

    ``sink`` receives every event (device/events.py), called from the link's thread.
    ``clock`` gives the touches' timestamps and the outbox's notion of age (its wall clock);
    reconnect timing uses the real monotonic clock, scaled by ``reconnect_min_seconds`` /
    ``reconnect_max_seconds``.
    """

    def __init__(
        self,
        *,
        lamp_id: str,
        password: str,
        sink: LinkSink,
        state_dir: Path,
        host: str = "localhost",
        port: int = 1883,
        username: str | None = None,
        topic_root: str = DEFAULT_ROOT,
        tls: bool = False,
        ca_file: Path | None = None,
        keepalive_seconds: int = 60,
        session_expiry_seconds: int = 2 * 24 * 3600,
        reconnect_min_seconds: float = 1.0,
        reconnect_max_seconds: float = 120.0,
        connect_timeout_seconds: float = 10.0,
        outbox_max_entries: int = 1000,
        outbox_max_age_seconds: float = 12 * 3600.0,
        seen_capacity: int = 1000,
        confirm_seconds: float | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.lamp_id = validate_lamp_id(lamp_id)
        self._username = username or lamp_id
        self._password = password
        self._sink = sink
        self._host = host
        self._port = port
        self._topics = Topics(topic_root)
        self._tls_context = tls_for_file(
            tls, ca_file, setting="TOUCHLAMP_DEVICE_MQTT__CA_FILE", error=LinkError
        )
        self._ca_file = ca_file
        self._keepalive = keepalive_seconds
        self._session_expiry = session_expiry_seconds
        self._connect_timeout = connect_timeout_seconds
        self._clock: Clock = clock or SystemClock()
        self._backoff = Backoff(
            minimum=reconnect_min_seconds,
            maximum=reconnect_max_seconds,
            rng=rng or random.Random(),
        )
        self._reconnect_max = reconnect_max_seconds
        # Retrying touches nobody subscribed to: as patient as reconnecting, jittered too.
        self._reroute_backoff = Backoff(
            minimum=reconnect_min_seconds,
            maximum=reconnect_max_seconds,
            rng=rng or random.Random(),
        )
        self._confirm_seconds = (
            _CONFIRM_KEEPALIVES * keepalive_seconds if confirm_seconds is None else confirm_seconds
        )
        self._outbox = Outbox(
            state_dir=state_dir,
            max_entries=outbox_max_entries,
            max_age_seconds=outbox_max_age_seconds,
            now=lambda: self._clock.local_now().timestamp(),
        )
        self._seen = SeenTouches(state_dir=state_dir, capacity=seen_capacity)

        # What paho reported during the last ``poll`` (its callbacks run inside it, on the
        # lamp's thread): handled right after, outside paho's locks (its on_publish runs under
        # one, and our handlers take ``_lock``, which publishers hold while calling paho).
        self._arrived: collections.deque[_Job] = collections.deque()
        self._attempt: _Attempt | None = None
        self._wakeup: Wakeup | None = None  # the owner's (set by ``open``)
        self._own_wakeup = False  # made by ``start`` for the link's own thread: closed at stop
        self._opened = False
        self._stop_requested = False
        # Guards _connection, _rejected, _stopping and _waiters; held while publishing touches so
        # that a PUBACK (handled on the lamp's thread) always finds its mid → seq mapping.
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._connection: _Connection | None = None
        self._generation = 0
        self._rejected: str | None = None
        self._stopping = False
        self._waiters: dict[bytes, _Waiter] = {}
        self._reconnect_at: float | None = None
        self._reroute_at: float | None = None
        self._checkpoint_at: float | None = None
        self._state_dir = state_dir
        self._glow_expiry = load_glow_expiry(state_dir)  # the relay's, as learnt (_waited)
        # The state files that refuse writes now (a full disk, a read-only card), with why.
        self._failing: dict[str, str] = {}
        self._failing_lock = threading.Lock()
        # (when, connection generation, seq): acknowledged touches waiting to be confirmed. As
        # many as the outbox holds; one forgotten stays there, acknowledged, until pushed out.
        self._confirming: collections.deque[tuple[float, int, int]] = collections.deque(
            maxlen=outbox_max_entries
        )
        self._thread: threading.Thread | None = None
        self._stop_timeout = 5.0

    @classmethod
    def from_settings(
        cls,
        settings: DeviceSettings,
        *,
        sink: LinkSink,
        clock: Clock | None = None,
    ) -> LampLink:
        """A link as ``settings`` describe it; ``LinkError`` when it has no password."""
        mqtt_settings = settings.mqtt
        if mqtt_settings.password is None:
            raise LinkError(
                f"lamp {settings.lamp_id} has no MQTT password: enroll it with `touchlamp device "
                "enroll TOKEN`, or set TOUCHLAMP_DEVICE_MQTT__PASSWORD (or …__PASSWORD_FILE)"
            )
        return cls(
            lamp_id=settings.lamp_id,
            username=settings.mqtt_username,
            password=mqtt_settings.password.get_secret_value(),
            sink=sink,
            state_dir=settings.state_dir,
            host=mqtt_settings.host,
            port=mqtt_settings.effective_port,
            topic_root=mqtt_settings.topic_root,
            tls=mqtt_settings.tls,
            ca_file=mqtt_settings.ca_file,
            keepalive_seconds=mqtt_settings.keepalive_seconds,
            session_expiry_seconds=mqtt_settings.session_expiry_seconds,
            reconnect_min_seconds=mqtt_settings.reconnect_min_seconds,
            reconnect_max_seconds=mqtt_settings.reconnect_max_seconds,
            outbox_max_entries=settings.outbox.max_entries,
            outbox_max_age_seconds=settings.outbox.max_age_hours * 3600,
            clock=clock,
        )

    # ---- public surface (any thread) -----------------------------------------------------

    def open(self, wakeup: Wakeup) -> None:
        """Start connecting, served from now on by the caller's loop (the lamp's thread):
        it calls ``serve`` whenever it waits, and its waits end at ``wakeup`` (which the link
        notifies when another thread publishes, or a connection attempt ends)."""
        if self._opened or self._stopping:
            raise LinkError(
                f"the link of {self.lamp_id} is already started (or stopped: a stopped link "
                "cannot start again, create a new LampLink)"
            )
        self._wakeup = wakeup
        self._opened = True
        self._reconnect_at = time.monotonic()

    def start(self) -> None:
        """Start connecting on a thread of the link's own (a link without a lamp loop: the
        ``device pair`` command, tests); events arrive at the sink from that thread."""
        self.open(Wakeup())
        self._own_wakeup = True
        self._thread = threading.Thread(target=self._run, name=f"link-{self.lamp_id}", daemon=True)
        self._thread.start()

    def serve(self, timeout: float | None) -> None:
        """One turn of the link, on its owner's thread: wait up to ``timeout`` seconds (None:
        no limit) for the broker, a due timer or the owner's wake-up, then handle what came —
        paho's callbacks, and the events they produce, run here. Returns early on a wake-up."""
        self._run_job(self._adopt)
        self._run_job(self._timers)
        wait = self._until_due(timeout)
        connection = self._connection
        if connection is not None:
            connection.driver.poll(self._keepalive / 4 if wait is None else wait)
        elif self._wakeup is not None:
            self._wakeup.wait(wait)
        self._handle_arrived()
        self._run_job(self._adopt)
        self._run_job(self._timers)

    def stop(self, *, timeout: float = 5.0) -> None:
        """Publish ``offline``, disconnect cleanly (so the will is not sent) and close the files.

        Touches still queued stay in the outbox for the next start. With a loop of the owner's
        (``open``), call it once that loop no longer serves the link: it runs on the caller.
        """
        thread = self._thread
        if thread is not None:
            self._stop_timeout = timeout
            self._stop_requested = True
            if self._wakeup is not None:
                self._wakeup.notify()
            thread.join()
            self._thread = None
        elif self._opened and not self._stopping:
            self._run_job(lambda: self._shut_down(timeout))
        elif not self._stopping:
            self._stopping = True
            self._close_files()
        if self._own_wakeup and self._wakeup is not None:
            self._wakeup.close()

    @property
    def connected(self) -> bool:
        """True while connected and ready: a touch sent now goes straight out."""
        with self._lock:
            return self._connection is not None and self._connection.ready

    @property
    def stream(self) -> int:
        return self._outbox.stream

    def outbox_stats(self) -> OutboxStats:
        return self._outbox.stats()

    def send_touch(self, color: str) -> TouchReceipt:
        """Queue a touch in ``color`` (assigning its seq), publish it if connected, then write
        it to disk; returns once it is on disk.

        The disk write comes after the publish: on an SD card its fsync takes 5-30 ms, which
        would otherwise be the slowest part of a touch's way. The price, a crash in the
        millisecond between: a touch not yet published is lost, and one published is not sent
        again after the restart (see device/outbox.py). A PUBACK that arrives before the write
        finds the touch all the same (the outbox keeps it in memory until then).

        Raises ``StateFileError`` when the outbox cannot be written (the touch is then lost,
        loudly, unless it went out already), ``pydantic.ValidationError`` for a colour that is
        not ``#rrggbb``.
        """
        if self._stopping:
            raise LinkError(f"the link of {self.lamp_id} is stopped; the touch was not queued")
        touch = self._outbox.reserve(color=color, ts_ms=epoch_ms(self._clock.local_now()))
        sent = False
        try:
            with self._lock:
                connection = self._connection
                if connection is not None and connection.ready:
                    self._pump(connection)
                    sent = touch.seq <= connection.handed_up_to
            if sent and connection is not None and connection.driver.owned_here():
                connection.driver.flush()  # out now, before the disk write (another thread's
                # publish wakes the owner's poll instead, which writes it)
        finally:
            try:
                self._outbox.persist(touch.seq)
            except StateFileError as error:
                self._state_trouble("outbox", error)  # it waits in memory, or went out
            else:
                self._state_trouble("outbox", None)
        return TouchReceipt(
            touch=touch, delivery=TouchOutcome.SENT if sent else TouchOutcome.QUEUED
        )

    def send_request(self, request: PairRequest, *, expiry_seconds: int = 60) -> bytes:
        """Publish ``request`` to the pairing service without waiting; returns the correlation
        data its answer will carry (an answer nobody waits for is logged, a refusal as a
        warning). ``LinkError`` when not connected."""
        correlation = secrets.token_bytes(16)
        self._publish_request(request, correlation, expiry_seconds)
        return correlation

    def announce_color(self, color: str, *, name: str | None = None) -> None:
        """Tell the group this lamp's colour (and name); fire and forget.

        Dropped with a log line while offline: the agent announces again when the group it
        receives after reconnecting shows a different colour.
        """
        request = PairRequest(action=PairAction.COLOR, color=color, name=name)
        try:
            self.send_request(request)
        except LinkError as error:
            logger.info("lamp %s: colour %s not announced: %s", self.lamp_id, color, error)

    def request(self, request: PairRequest, *, timeout: float = 10.0) -> PairResponse:
        """Ask the pairing service and wait for its answer (MQTT 5 request/response).

        Waits for the connection first (both within ``timeout``). ``LinkTimeoutError`` when either
        does not come in time, ``LinkError`` when the broker refused the credentials.
        """
        deadline = time.monotonic() + timeout
        self._wait_until_ready(deadline)
        correlation = secrets.token_bytes(16)
        waiter = _Waiter()
        with self._lock:
            self._waiters[correlation] = waiter
        try:
            self._publish_request(request, correlation, max(1, round(timeout)))
            if not waiter.done.wait(max(0.0, deadline - time.monotonic())):
                raise LinkTimeoutError(
                    f"the pairing service did not answer {request.action.value!r} within "
                    f"{timeout:g} s: is the relay running and connected to the broker?"
                )
        finally:
            with self._lock:
                self._waiters.pop(correlation, None)
        assert waiter.response is not None  # set before done, see _on_message
        return waiter.response

    # ---- the link thread -----------------------------------------------------------------

    def _run(self) -> None:
        """The link's own thread (``start``): serves it until ``stop``."""
        wakeup = self._wakeup
        assert wakeup is not None  # set by start()
        while not self._stop_requested:
            wakeup.clear()
            self.serve(None)
        self._run_job(lambda: self._shut_down(self._stop_timeout))

    def _until_due(self, timeout: float | None) -> float | None:
        """How long ``serve`` may wait: ``timeout``, shortened to the next timer, and to a
        quarter keepalive while connected (paho's keep-alive ping is sent from ``poll``)."""
        due = [self._reconnect_at, self._reroute_at, self._checkpoint_at]
        if self._confirming:
            due.append(self._confirming[0][0])
        wake_at = min((at for at in due if at is not None), default=None)
        limits = [] if timeout is None else [timeout]
        if wake_at is not None:
            limits.append(max(0.0, wake_at - time.monotonic()))
        if self._connection is not None:
            limits.append(self._keepalive / 4)
        return min(limits, default=None)

    def _handle_arrived(self) -> None:
        while self._arrived:
            self._run_job(self._arrived.popleft())

    def _timers(self) -> None:
        """Whatever has come due: confirmations, re-sending unrouted touches, reconnecting,
        checkpointing the seen glows."""
        now = time.monotonic()
        self._confirm_due(now)
        if self._reroute_at is not None and now >= self._reroute_at:
            self._reroute_at = None
            self._reroute()
        if self._reconnect_at is not None and now >= self._reconnect_at:
            self._reconnect_at = None
            self._connect()
        if self._checkpoint_at is not None and now >= self._checkpoint_at:
            self._checkpoint_at = None
            self._checkpoint_seen()

    def _run_job(self, job: _Job) -> None:
        try:
            job()
        except Exception:
            # The loop must outlive one bad job (a failing sink, a full disk): the link is the
            # lamp's only way to the broker. The traceback goes to the log.
            logger.exception("lamp %s: the MQTT link failed handling an event", self.lamp_id)

    def _connect(self) -> None:
        with self._lock:
            if self._stopping or self._rejected is not None or self._attempt is not None:
                return
            self._generation += 1
            attempt = _Attempt(
                generation=self._generation,
                client=self._new_client(self._generation),
                started=time.monotonic(),
            )
            self._attempt = attempt
        threading.Thread(
            target=self._dial, args=(attempt,), name=f"link-{self.lamp_id}-connect", daemon=True
        ).start()

    def _dial(self, attempt: _Attempt) -> None:
        """The attempt's own thread: connect (and send CONNECT), then hand it to the lamp's
        thread. An attempt that ends after the link stopped is closed here."""
        try:
            attempt.client.connect(
                self._host,
                self._port,
                keepalive=self._keepalive,
                clean_start=False,
                properties=connect_properties(session_expiry_seconds=self._session_expiry),
            )
        except (OSError, ValueError) as error:
            attempt.error = error
        with self._lock:
            attempt.done = True
            abandoned = self._stopping and attempt.error is None
        if abandoned:
            _abandon(attempt.client)
        elif self._wakeup is not None:
            self._wakeup.notify()

    def _adopt(self) -> None:
        """Take over the connection an attempt made (the lamp's thread), or schedule the next."""
        with self._lock:
            attempt = self._attempt
            if attempt is None or not attempt.done or self._stopping:
                return
            self._attempt = None
            if attempt.error is None and attempt.client.socket() is None:
                # Lost while connecting (paho closed it writing the CONNECT, and reported that
                # on the dialling thread): nothing to take over, try again.
                attempt.error = ConnectionResetError("the connection closed while connecting")
            if attempt.error is None:
                self._connection = _Connection(
                    generation=attempt.generation,
                    client=attempt.client,
                    # The lamp's own reconnect policy (a new client each time), not the driver's.
                    driver=MqttDriver(
                        attempt.client,
                        min_delay=1.0,
                        max_delay=1.0,
                        wake=self._wakeup,
                        reconnect=False,
                    ),
                    started=attempt.started,
                )
                return
        error = attempt.error
        delay = self._backoff.next_delay()
        why = (
            why_untrusted(error, host=self._host, ca_file=self._ca_file)
            if isinstance(error, ssl.SSLCertVerificationError)
            else str(error)
        )
        logger.warning(
            "lamp %s cannot reach the broker at %s:%d (%s); retrying in %.1f s",
            self.lamp_id,
            self._host,
            self._port,
            why,
            delay,
        )
        self._reconnect_at = time.monotonic() + delay

    def _new_client(self, generation: int) -> mqtt.Client:
        client = new_client(
            self.lamp_id,
            username=self._username,
            password=self._password,
            tls=self._tls_context,
            log_as=f"{__name__}.paho",
            reconnect_on_failure=False,
            manual_ack=True,  # see on_message: acknowledged once handled, not once read
            connect_timeout=self._connect_timeout,
            will=Will(
                self._topics.availability(self.lamp_id), encode_availability(Availability.OFFLINE)
            ),
        )

        subscriptions = [
            self._topics.glow(self.lamp_id),
            self._topics.group(self.lamp_id),
            self._topics.pair_response(self.lamp_id),
        ]
        subscribing: list[int] = []  # the mid of this connection's SUBSCRIBE
        session_present: list[bool] = []

        # paho's callbacks run inside ``poll`` on the lamp's thread, under paho's own locks:
        # each only notes what arrived, handled right after the poll (``_handle_arrived``).
        def on_connect(
            client: mqtt.Client,
            _userdata: object,
            flags: mqtt.ConnectFlags,
            reason: ReasonCode,
            _properties: Properties | None,
        ) -> None:
            if reason.is_failure:
                verdict = reasons.connack(reason.value)
                self._arrived.append(lambda: self._on_refused(generation, verdict))
                return
            # Subscribing on every connect keeps working when the broker lost the session.
            # The link reports itself connected at the SUBACK: from then on nothing sent to
            # this lamp can miss it, even on a brand-new session.
            _, mid = client.subscribe([(topic, SubscribeOptions(qos=1)) for topic in subscriptions])
            subscribing[:] = [] if mid is None else [mid]
            client.publish(
                self._topics.availability(self.lamp_id),
                encode_availability(Availability.ONLINE),
                qos=1,
                retain=True,
            )
            session_present[:] = [flags.session_present]

        def on_subscribe(
            _client: mqtt.Client,
            _userdata: object,
            mid: int,
            reasons: list[ReasonCode],
            _properties: Properties | None,
        ) -> None:
            if mid not in subscribing:
                return
            refused = [
                f"{topic} ({reason})"
                for topic, reason in zip(subscriptions, reasons, strict=False)
                if reason.is_failure
            ]
            present = bool(session_present and session_present[0])
            self._arrived.append(
                lambda: self._on_connected(generation, session_present=present, refused=refused)
            )

        def on_disconnect(
            _client: mqtt.Client,
            _userdata: object,
            _flags: mqtt.DisconnectFlags,
            reason: ReasonCode,
            _properties: Properties | None,
        ) -> None:
            self._arrived.append(lambda: self._on_disconnected(generation, str(reason)))

        def on_message(client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
            correlation = getattr(message.properties, "CorrelationData", None)
            expiry = getattr(message.properties, "MessageExpiryInterval", None)
            topic, payload = message.topic, bytes(message.payload)
            mid, qos = message.mid, message.qos

            def handle() -> None:
                self._on_message(topic, payload, correlation, expiry)
                # Only now: a glow is recorded as seen and handed to the core. A lamp that dies
                # before this gets it again from the broker; the seen ids drop a repeat.
                if qos:
                    client.ack(mid, qos)

            self._arrived.append(handle)

        def on_publish(
            _client: mqtt.Client,
            _userdata: object,
            mid: int,
            reason: ReasonCode,
            _properties: Properties | None,
        ) -> None:
            self._arrived.append(lambda: self._on_published(generation, mid, reason))

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.on_subscribe = on_subscribe
        client.on_message = on_message
        client.on_publish = on_publish
        return client

    def _on_connected(self, generation: int, *, session_present: bool, refused: list[str]) -> None:
        if refused:
            logger.error(
                "lamp %s: the broker refused the subscription(s) %s; check its ACL for this lamp",
                self.lamp_id,
                ", ".join(refused),
            )
        try:
            self._outbox.expire()
        except StateFileError as error:
            self._state_trouble("outbox", error)  # too old to show, still: sent all the same
        with self._lock:
            connection = self._connection
            if connection is None or connection.generation != generation:
                return
            connection.ready = True
            self._pump(connection)
            self._changed.notify_all()
            waiting = len(connection.handed)  # PUBACKs are handled on this thread, later
        session = "session resumed" if session_present else "new session"
        if not waiting:
            logger.info(
                "lamp %s connected to %s:%d (%s)", self.lamp_id, self._host, self._port, session
            )
        else:
            # Not news of trouble: after every restart the touches of the last two keepalives
            # are here, delivered but not yet confirmed (RELIABILITY.md, change 2).
            logger.info(
                "lamp %s connected to %s:%d (%s); sent the %d touch(es) its outbox holds: made "
                "while offline, or sent before and not yet confirmed (the relay drops those it "
                "already has)",
                self.lamp_id,
                self._host,
                self._port,
                session,
                waiting,
            )
        self._emit(Connected(session_present=session_present))

    def _on_refused(self, generation: int, reason: reasons.Reason) -> None:
        if generation != self._generation:
            return
        if reason.verdict is not reasons.Verdict.STOP:
            logger.warning(
                "lamp %s: the broker at %s:%d refused the connection (%s); retrying",
                self.lamp_id,
                self._host,
                self._port,
                reason,
            )
            return
        with self._lock:
            self._rejected = str(reason)
            self._changed.notify_all()
        how = (
            " (`touchlamp device enroll TOKEN`, or TOUCHLAMP_DEVICE_MQTT__PASSWORD)"
            if reason.code in _LOGIN_REFUSED
            else ""
        )
        logger.error(
            "lamp %s: the broker at %s:%d refused user %r (%s); not retrying: %s%s",
            self.lamp_id,
            self._host,
            self._port,
            self._username,
            reason,
            reason.fix,
            how,
        )
        self._emit(Disconnected(reason=str(reason), auth_failed=True))

    def _on_disconnected(self, generation: int, reason: str) -> None:
        with self._lock:
            connection = self._connection
            if connection is None or connection.generation != generation:
                return
            self._connection = None
            self._changed.notify_all()
            retry = not self._stopping and self._rejected is None
        # Acknowledged on a connection that did not last: the next one sends them again.
        self._outbox.forget_acknowledgements()
        self._confirming.clear()
        self._reroute_at = None
        if time.monotonic() - connection.started >= self._reconnect_max:
            self._backoff.reset()  # it held; a connection kicked at once keeps backing off
        if retry:
            delay = self._backoff.next_delay()
            self._reconnect_at = time.monotonic() + delay
            logger.warning(
                "lamp %s lost the broker (%s); reconnecting in %.1f s", self.lamp_id, reason, delay
            )
        if connection.ready:
            self._emit(Disconnected(reason=reason))

    def _on_published(self, generation: int, mid: int, code: ReasonCode) -> None:
        reason = reasons.puback(code.value)
        held = reason.verdict in (reasons.Verdict.NO_SUBSCRIBERS, reasons.Verdict.RETRY)
        with self._lock:
            connection = self._connection
            if connection is None or connection.generation != generation:
                return
            seq = connection.handed.pop(mid, None)
            if seq is not None and held:
                connection.unrouted.add(seq)
            if seq is not None and seq == connection.probe:
                connection.probe = None
                if not held:
                    self._pump(connection)  # a relay took it: the rest follows, in order
        if seq is None:
            return  # availability or a pairing request, not a touch
        if reason.verdict is reasons.Verdict.STOP:
            # Resending cannot fix a refusal (an ACL that does not allow this topic); keep
            # the outbox from filling with it, loudly.
            logger.error(
                "lamp %s: the broker refused touch seq %d (%s); dropped it: %s (%s)",
                self.lamp_id,
                seq,
                reason,
                reason.fix,
                self._topics.touch(self.lamp_id),
            )
            self._remove(seq)
        elif held:
            # NO_SUBSCRIBERS: accepted, but no relay is subscribed (not running, or the broker
            # restarted and forgot the relay's shared subscription); RETRY: refused for now.
            # Either way kept, and sent again (alone, newer ones behind it) until one is taken.
            if self._reroute_at is None:
                delay = self._reroute_backoff.next_delay()
                self._reroute_at = time.monotonic() + delay
                why = (
                    "no relay is subscribed to touches; is the relay running?"
                    if reason.verdict is reasons.Verdict.NO_SUBSCRIBERS
                    else f"refused for now ({reason})"
                )
                logger.warning(
                    "lamp %s: touch seq %d reached the broker but %s; keeping it and trying "
                    "again in %.1f s",
                    self.lamp_id,
                    seq,
                    why,
                    delay,
                )
        else:
            self._reroute_backoff.reset()
            if self._confirm_seconds <= 0:
                self._remove(seq)
            else:
                self._outbox.acknowledge(seq)
                self._confirming.append((time.monotonic() + self._confirm_seconds, generation, seq))

    def _confirm_due(self, now: float) -> None:
        """Remove the touches whose connection has outlived their PUBACK long enough."""
        with self._lock:
            current = self._connection.generation if self._connection is not None else None
        while self._confirming and self._confirming[0][0] <= now:
            _, generation, seq = self._confirming.popleft()
            if generation == current:
                self._remove(seq)

    def _reroute(self) -> None:
        """Send the oldest touch nobody was subscribed to again, alone; the rest follow once a
        relay has taken it (``_on_published``), so none overtakes another."""
        with self._lock:
            connection = self._connection
            if connection is None or not connection.ready or not connection.unrouted:
                return
            # Those between it and the newest sent go again too: the relay drops the repeats.
            connection.handed_up_to = min(connection.unrouted) - 1
            connection.unrouted.clear()
            oldest = self._outbox.pending(after_seq=connection.handed_up_to, limit=1)
            if not oldest:
                return  # it expired meanwhile (counted); nothing waits any more
            info = connection.client.publish(
                self._topics.touch(self.lamp_id), encode(oldest[0]), qos=1, retain=False
            )
            if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                connection.handed[info.mid] = oldest[0].seq
                connection.handed_up_to = oldest[0].seq
                connection.probe = oldest[0].seq

    def _on_message(
        self, topic: str, payload: bytes, correlation: bytes | None, expiry: object = None
    ) -> None:
        try:
            self._dispatch(topic, payload, correlation, expiry)
        except ProtocolError as error:
            logger.warning(
                "lamp %s dropped a bad message on %s: %s (payload %r)",
                self.lamp_id,
                topic[:200],
                error.reason,
                payload[:_EXCERPT_BYTES],
            )

    def _dispatch(
        self, topic: str, payload: bytes, correlation: bytes | None, expiry: object = None
    ) -> None:
        """Decode one message and emit its event; ``ProtocolError`` for anything off-protocol.

        ``expiry`` is the Message Expiry Interval the broker delivered it with (its remaining
        lifetime), if any."""
        match = self._topics.parse(topic)
        if match.lamp_id != self.lamp_id:
            raise ProtocolError(topic, f"not a topic of lamp {self.lamp_id}")
        if match.kind is Kind.GLOW:
            glow = decode_glow(topic, payload)
            if self._first_time(glow.touch):
                self._emit(GlowReceived.from_message(glow, waited_seconds=self._waited(expiry)))
                if self._seen.unchecked >= _SEEN_CHECKPOINT_IDS:
                    self._checkpoint_seen()  # the glow is on its way to the LED already
                self._checkpoint_at = time.monotonic() + _SEEN_CHECKPOINT_QUIET_SECONDS
            else:
                logger.debug("lamp %s: dropped repeated glow %s", self.lamp_id, glow.touch)
        elif match.kind is Kind.GROUP:
            self._emit(GroupChanged.from_message(decode_group(topic, payload)))
        elif match.kind is Kind.PAIR_RESPONSE:
            response = decode_pair_response(topic, payload)
            with self._lock:
                waiter = self._waiters.get(correlation) if correlation is not None else None
            if waiter is not None:
                waiter.response = response
                waiter.done.set()
            elif not response.ok:  # fire and forget (a colour announced): say what went wrong
                logger.warning(
                    "lamp %s: the pairing service refused %s: %s",
                    self.lamp_id,
                    response.action.value,
                    response.reason or response.error,
                )
        else:
            raise ProtocolError(topic, f"lamps do not receive {match.kind.value} messages")

    def _first_time(self, touch: str) -> bool:
        """Whether the glow of ``touch`` is new, remembering it; a glow the seen-glow file
        cannot record (a full disk, a read-only card) is shown all the same: shown perhaps
        twice later beats never."""
        try:
            new = self._seen.first_time(touch)
        except StateFileError as error:
            self._state_trouble("seen", error)
            return True
        self._state_trouble("seen", None)
        return new

    def _checkpoint_seen(self) -> None:
        try:
            self._seen.checkpoint()
        except StateFileError as error:
            self._state_trouble("seen", error)

    def _remove(self, seq: int) -> None:
        """The touch ``seq`` left (confirmed, or refused for good). On a disk that refuses the
        delete it stays there, and a restart sends it again: the relay drops the repeat."""
        try:
            self._outbox.remove(seq)
        except StateFileError as error:
            self._state_trouble("outbox", error)

    def _state_trouble(self, name: str, error: StateFileError | None) -> None:
        """Whether the state file ``name`` takes writes; said once (with the fix) when the
        first one refuses and once when all take them again, to the log and to the core (its
        "trouble" look). The lamp carries on meanwhile (RELIABILITY.md, scenario 9)."""
        with self._failing_lock:
            before = bool(self._failing)
            if error is None:
                if self._failing.pop(name, None) is None:
                    return
            elif name in self._failing:
                return
            else:
                self._failing[name] = str(error)
            after = bool(self._failing)
        if after and not before:
            logger.error(
                "lamp %s: %s. The lamp carries on: touches go out while it is connected and wait "
                "in memory while it is not (lost if it restarts), glows are shown but not "
                "remembered (one may show again after a restart)",
                self.lamp_id,
                error,
            )
            self._emit(StateTrouble(failing=True, error=str(error)))
        elif before and not after:
            logger.warning("lamp %s: its state directory takes writes again", self.lamp_id)
            self._emit(StateTrouble(failing=False))

    def _waited(self, remaining: object) -> float | None:
        """How long the broker kept a glow, told by its expiry alone (no clock involved).

        The broker delivers a glow with what is left of the relay's Message Expiry Interval, and
        the relay gives every glow the same one: so the most left on any glow seen is that
        interval (a glow delivered at once keeps all of it), and a glow with less left waited
        the difference. ``None`` for a glow without an expiry. Until the link has seen a glow
        delivered at once (just after a restart, with a backlog), the age is measured from the
        freshest glow seen — under by at most the relay's expiry, which bounds it anyway.
        """
        if not isinstance(remaining, int):
            return None
        if remaining > self._glow_expiry:  # kept for the next start (device/glow_expiry.py)
            self._glow_expiry = remaining
            save_glow_expiry(self._state_dir, remaining)
        return float(self._glow_expiry - remaining)

    def _shut_down(self, timeout: float) -> None:
        with self._lock:
            self._stopping = True
            connection = self._connection
            attempt = self._attempt if self._attempt is not None and self._attempt.done else None
            self._changed.notify_all()
        self._reconnect_at = None
        if attempt is not None and attempt.error is None:
            _abandon(attempt.client)  # connected, not yet taken over: nothing to say on it
        if connection is not None:
            client, driver = connection.client, connection.driver
            if connection.ready:
                info = client.publish(
                    self._topics.availability(self.lamp_id),
                    encode_availability(Availability.OFFLINE),
                    qos=1,
                    retain=True,
                )
                deadline = time.monotonic() + timeout
                while (
                    info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS
                    and not info.is_published()
                    and client.socket() is not None
                    and (left := deadline - time.monotonic()) > 0
                ):
                    driver.poll(min(left, 0.1))
            # A normal DISCONNECT: the broker discards the will, ``offline`` is already there.
            # The driver's close lingers, so that it and the last PUBACKs reach the broker.
            driver.close()
        # Whatever paho reported until the end (PUBACKs, the disconnect) still counts.
        self._handle_arrived()
        with self._lock:
            if self._connection is not None and self._connection is connection:
                self._connection = None
        if connection is not None and connection.ready:
            logger.info("lamp %s disconnected from the broker", self.lamp_id)
        self._close_files()

    # ---- helpers -------------------------------------------------------------------------

    def _pump(self, connection: _Connection) -> bool:
        """Publish every queued touch not yet published on ``connection``, in seq order.

        Called with ``_lock`` held. False when paho reported the connection gone midway (the
        rest waits for the next connection). While a touch waits for a relay to subscribe
        (``unrouted``, ``probe``), newer ones wait behind it, so they do not arrive first.
        """
        if connection.unrouted or connection.probe is not None:
            return True
        while True:
            batch = self._outbox.pending(after_seq=connection.handed_up_to, limit=_PUMP_BATCH)
            if not batch:
                return True
            for touch in batch:
                info = connection.client.publish(
                    self._topics.touch(self.lamp_id), encode(touch), qos=1, retain=False
                )
                if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    return False
                connection.handed[info.mid] = touch.seq
                connection.handed_up_to = touch.seq

    def _publish_request(self, request: PairRequest, correlation: bytes, expiry: int) -> None:
        properties = mqtt_properties(PacketTypes.PUBLISH)
        properties.ResponseTopic = self._topics.pair_response(self.lamp_id)
        properties.CorrelationData = correlation
        # A request nobody answered in time must not be carried out later by surprise.
        properties.MessageExpiryInterval = expiry
        with self._lock:
            connection = self._connection
            if connection is None or not connection.ready:
                raise LinkError(self._not_connected_reason())
            info = connection.client.publish(
                self._topics.pair(self.lamp_id), encode(request), qos=1, properties=properties
            )
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise LinkError(f"lamp {self.lamp_id} lost the broker while sending the request")

    def _wait_until_ready(self, deadline: float) -> None:
        with self._changed:
            while self._connection is None or not self._connection.ready:
                if self._rejected is not None or self._stopping or not self._opened:
                    raise LinkError(self._not_connected_reason())
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise LinkTimeoutError(
                        f"lamp {self.lamp_id} could not connect to the broker at "
                        f"{self._host}:{self._port} in time: is it running and reachable?"
                    )
                self._changed.wait(remaining)

    def _not_connected_reason(self) -> str:
        if self._rejected is not None:
            return (
                f"the broker refused lamp {self.lamp_id}'s credentials ({self._rejected}): "
                "re-enroll the lamp or fix its password"
            )
        if not self._opened or self._stopping:
            return f"the link of lamp {self.lamp_id} is not running: call start() first"
        return f"lamp {self.lamp_id} is not connected to the broker at {self._host}:{self._port}"

    def _emit(self, event: Event) -> None:
        try:
            self._sink(event)
        except Exception:
            # A failing receiver must not take the link down; its traceback goes to the log.
            logger.exception("lamp %s: the link's event sink failed on %r", self.lamp_id, event)

    def _close_files(self) -> None:
        self._outbox.close()
        self._seen.close()


def _abandon(client: mqtt.Client) -> None:
    """Close a connection the link no longer wants (made while it stopped): DISCONNECT, so the
    broker keeps the session and sends no will, then the socket."""
    client.on_socket_register_write = None  # written at once, here
    client.disconnect()
    sock = client.socket()
    if sock is not None:
        sock.close()
