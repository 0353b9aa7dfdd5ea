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
- paho's reconnect backoff has no jitter: the link reconnects itself (``Backoff``), and
  stops for good when the broker refuses the credentials instead of hammering it.

Its parts, each with the rules it keeps:

- device/touch_delivery.py — the touches on their way out: **confirmed, not just
  acknowledged**; **"no matching subscribers" is not delivered**; a touch refused for good is
  dropped, one refused for now waits (one rule for the broker's reason codes, mqtt/reasons.py).
- device/incoming.py — what arrives, decoded into the lamp's events: a glow shown once (the
  seen ids, device/dedup.py), aged by its expiry; pairing answers to their waiters.
- device/link_client.py — one connection's paho client, whose callbacks only note what
  arrived: subscribed on every connect; **acknowledged once kept** (``manual_ack``): here,
  ``shown`` — the owner drew what it was handed — records the glows as seen, then sends the
  acknowledgements.
- device/state_trouble.py — whether the state files take writes, said once each way.
- Here: the public surface, the connection's life (dial, adopt, serve, refusal, reconnect,
  shut down), and **published, then written** (``send_touch``): a touch gets its seq from the
  outbox in memory, goes to paho, and is written to disk (``synchronous=FULL``: an fsync, 5-30
  ms on an SD card) right after, so the fsync is not in front of the publish. A crash in
  between loses a touch not yet published (made a millisecond earlier) and does not resend one
  that was; the seq is used up either way (device/outbox.py), so the next touch is never
  mistaken for a repeat. A PUBACK may come before the write: the outbox counts the touch as
  queued from the start.
- The broker refusing the credentials (mqtt/reasons.py: a refusal retrying cannot fix) stops
  the link for good instead of hammering the broker.

Why this file stays over 500 lines: what is left shares one lock and one state (the connection,
the attempt, refused, stopping) between the callers' threads and the serving thread. Cut
further, that lock would cross files, and who holds it when calling paho would no longer read
in one place; the parts above take only what they need.
"""

from __future__ import annotations

import collections
import logging
import random
import secrets
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from touchlamp.config.device import DeviceSettings
from touchlamp.device.clock import Clock, SystemClock, epoch_ms
from touchlamp.device.events import Connected, Disconnected, Event, TouchOutcome
from touchlamp.device.incoming import IncomingMessages
from touchlamp.device.link_api import LinkError, LinkSink, LinkTimeoutError, TouchReceipt
from touchlamp.device.link_client import Job, LinkHandlers, new_link_client
from touchlamp.device.outbox import Outbox, OutboxStats, StateFileError
from touchlamp.device.state_trouble import StateFileWatch
from touchlamp.device.touch_delivery import HandedTouches, TouchDelivery
from touchlamp.lifecycle import StopsOnExit
from touchlamp.mqtt import reasons
from touchlamp.mqtt.backoff import Backoff
from touchlamp.mqtt.client import connect_properties, tls_for_file
from touchlamp.mqtt.client import properties as mqtt_properties
from touchlamp.mqtt.driver import MqttDriver
from touchlamp.mqtt.tls import why_untrusted
from touchlamp.mqtt.wakeup import Wakeup
from touchlamp.protocol import (
    DEFAULT_ROOT,
    Availability,
    PairAction,
    PairRequest,
    PairResponse,
    Topics,
    encode,
    encode_availability,
    validate_lamp_id,
)

__all__ = ["LampLink"]

logger = logging.getLogger(__name__)

_LOGIN_REFUSED = frozenset({0x86, 0x87})  # bad user name or password, not authorized


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
    touches: HandedTouches  # the touches handed to ``client`` (device/touch_delivery.py)
    ready: bool = False  # subscribed, online published, outbox pumped: new touches go out now


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
        self._trouble = StateFileWatch(lamp_id=self.lamp_id, emit=self._emit)
        self._outbox = Outbox(
            state_dir=state_dir,
            max_entries=outbox_max_entries,
            max_age_seconds=outbox_max_age_seconds,
            now=lambda: self._clock.local_now().timestamp(),
        )
        self._touches = TouchDelivery(
            lamp_id=self.lamp_id,
            topics=self._topics,
            outbox=self._outbox,
            trouble=self._trouble,
            keepalive_seconds=keepalive_seconds,
            confirm_seconds=confirm_seconds,
            retry_min_seconds=reconnect_min_seconds,
            retry_max_seconds=reconnect_max_seconds,
            rng=rng,
            outbox_max_entries=outbox_max_entries,
        )
        # Guards _connection, _rejected, _stopping and the pairing waiters (device/incoming.py);
        # held while publishing touches so that a PUBACK (handled on the lamp's thread) always
        # finds its mid → seq mapping.
        self._lock = threading.Lock()
        self._incoming = IncomingMessages(
            lamp_id=self.lamp_id,
            topics=self._topics,
            state_dir=state_dir,
            seen_capacity=seen_capacity,
            lock=self._lock,
            emit=self._emit,
            trouble=self._trouble,
        )

        # What paho reported during the last ``poll`` (its callbacks run inside it, on the
        # lamp's thread): handled right after, outside paho's locks (its on_publish runs under
        # one, and our handlers take ``_lock``, which publishers hold while calling paho).
        self._arrived: collections.deque[Job] = collections.deque()
        # Acknowledgements of messages handled, by connection generation, in their order: sent
        # once what the link handed on is kept (``shown``; device/link_client.py).
        self._unacknowledged: collections.deque[tuple[int, Job]] = collections.deque()
        self._attempt: _Attempt | None = None
        self._wakeup: Wakeup | None = None  # the owner's (set by ``open``)
        self._own_wakeup = False  # made by ``start`` for the link's own thread: closed at stop
        self._opened = False
        self._stop_requested = False
        self._changed = threading.Condition(self._lock)
        self._connection: _Connection | None = None
        self._generation = 0
        self._rejected: str | None = None
        self._stopping = False
        self._reconnect_at: float | None = None
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
        if self._own_wakeup:
            self.shown()  # the link's own thread: the sink has returned, that is kept
        self._run_job(self._adopt)
        self._run_job(self._timers)

    def shown(self) -> None:
        """The owner has shown what the link handed it so far (the agent says so after each
        frame; a link on its own thread, once its sink returned): the glows' ids are recorded
        as seen, then their messages acknowledged. On the owner's thread."""
        self._run_job(self._incoming.kept)
        if not self._unacknowledged:
            return
        with self._lock:
            connection = self._connection
        current = connection.generation if connection is not None else None
        while self._unacknowledged:
            generation, acknowledge = self._unacknowledged.popleft()
            if generation == current:  # an ended connection's messages come again anyway
                self._run_job(acknowledge)
        if connection is not None and connection.driver.owned_here():
            connection.driver.flush()

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
                    self._touches.pump(connection.touches)
                    sent = touch.seq <= connection.touches.handed_up_to
            if sent and connection is not None and connection.driver.owned_here():
                connection.driver.flush()  # out now, before the disk write (another thread's
                # publish wakes the owner's poll instead, which writes it)
        finally:
            try:
                self._outbox.persist(touch.seq)
            except StateFileError as error:
                self._trouble.report("outbox", error)  # it waits in memory, or went out
            else:
                self._trouble.report("outbox", None)
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
        waiter = self._incoming.expect(correlation)
        try:
            self._publish_request(request, correlation, max(1, round(timeout)))
            if not waiter.done.wait(max(0.0, deadline - time.monotonic())):
                raise LinkTimeoutError(
                    f"the pairing service did not answer {request.action.value!r} within "
                    f"{timeout:g} s: is the relay running and connected to the broker?"
                )
        finally:
            self._incoming.forget(correlation)
        assert waiter.response is not None  # set before done (device/incoming.py)
        return waiter.response

    # ---- serving: the lamp's thread, or the link's own (start) ----------------------------

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
        due = [self._reconnect_at, self._incoming.checkpoint_at, *self._touches.due()]
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
        with self._lock:
            current = self._connection.generation if self._connection is not None else None
        self._touches.confirm_due(now, current)
        if self._touches.reroute_due(now):
            self._reroute()
        if self._reconnect_at is not None and now >= self._reconnect_at:
            self._reconnect_at = None
            self._connect()
        self._incoming.checkpoint_if_due(now)

    def _run_job(self, job: Job) -> None:
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
                    touches=HandedTouches(attempt.client),
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
        return new_link_client(
            lamp_id=self.lamp_id,
            username=self._username,
            password=self._password,
            tls=self._tls_context,
            connect_timeout=self._connect_timeout,
            topics=self._topics,
            log_as=f"{__name__}.paho",
            generation=generation,
            arrived=self._arrived,
            handlers=LinkHandlers(
                refused=self._on_refused,
                connected=self._on_connected,
                disconnected=self._on_disconnected,
                message=self._incoming.handle,
                published=self._on_published,
                handled=lambda generation, ack: self._unacknowledged.append((generation, ack)),
            ),
        )

    def _on_connected(self, generation: int, session_present: bool, refused: list[str]) -> None:
        if refused:
            logger.error(
                "lamp %s: the broker refused the subscription(s) %s; check its ACL for this lamp",
                self.lamp_id,
                ", ".join(refused),
            )
        self._touches.expire()
        with self._lock:
            connection = self._connection
            if connection is None or connection.generation != generation:
                return
            connection.ready = True
            self._touches.pump(connection.touches)
            self._changed.notify_all()
            waiting = len(connection.touches.handed)  # PUBACKs are handled on this thread, later
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
        self._touches.connection_lost()
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
        with self._lock:
            connection = self._connection
            if connection is None or connection.generation != generation:
                return
            seq = self._touches.acknowledged(connection.touches, mid, reason)
        if seq is None:
            return  # availability or a pairing request, not a touch
        self._touches.settle(generation, seq, reason)

    def _reroute(self) -> None:
        """Send the touches nobody was subscribed to again, on a ready connection."""
        with self._lock:
            connection = self._connection
            if connection is None or not connection.ready:
                return
            self._touches.reroute(connection.touches)

    def _shut_down(self, timeout: float) -> None:
        with self._lock:
            self._stopping = True
            connection = self._connection
            attempt = self._attempt if self._attempt is not None and self._attempt.done else None
            self._changed.notify_all()
        self._reconnect_at = None
        if attempt is not None and attempt.error is None:
            _abandon(attempt.client)  # connected, not yet taken over: nothing to say on it
        if self._own_wakeup:
            self.shown()  # the sink has returned: its acknowledgements leave before the close
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
        self._incoming.close()


def _abandon(client: mqtt.Client) -> None:
    """Close a connection the link no longer wants (made while it stopped): DISCONNECT, so the
    broker keeps the session and sends no will, then the socket."""
    client.on_socket_register_write = None  # written at once, here
    client.disconnect()
    sock = client.socket()
    if sock is not None:
        sock.close()
