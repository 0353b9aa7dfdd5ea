"""The relay's edge: one paho client, driven by one worker thread.

::

    broker ══► socket ──poll: paho reads, on_message──► inbox ──► the same thread takes a batch:
                                                                   decides (forwarding, pairing,
                                                                   presence), stores,
    broker ◄══ socket ◄──────── flush ◄──── publishes glows / group states, then acks the batch

What to know before changing it:

- **Persistent session.** MQTT 5 with ``clean_start=False`` *and* a session expiry: while the
  relay restarts, the broker queues the touches for its client id. paho keeps the session in
  memory only, which is fine here: everything that matters is in the broker and the store.
- **Shared subscriptions** ``$share/<name>/…/lamp/+/touch`` and ``…/pair`` so several relays split
  the work. Availability is a *plain* subscription: MQTT 5 says a shared subscription gets no
  retained messages, and the retained ``online``/``offline`` of every lamp is exactly what a
  starting relay needs (each relay records it; the store reports a change only once).
  Measured on Mosquitto 2.0.11 (tests/faults, RELIABILITY.md): it *does* replay retained
  messages to a new shared subscription, so a retained touch is refused (``_handle``); it does
  not keep shared subscriptions over its own restart, so the relay subscribes on every connect
  and lamps retry a touch nobody was subscribed to; and it keeps queueing a share of the
  touches for a relay that is gone, until that relay's session comes back or expires.
- **One thread.** The worker owns the paho client (mqtt/driver.py: it reads, writes and
  reconnects between batches). paho's own network thread would cost a socket-pair wake-up and a
  GIL hand-over per publish and per ack, and a queue crossing per message: about a sixth of the
  relay's CPU per touch (issue 7). Nothing is read while a batch is handled: the broker's data
  waits in the socket, which is TCP's own back-pressure; keep-alive pings go out between
  batches (milliseconds apart) and while the worker waits to retry an unavailable store.
- **Batches, never waiting for one.** The worker takes every message already read (up to
  ``_BATCH`` at a time). Consecutive touches are decided together (server/forwarding.py: one
  store transaction, groups from memory), their glows published in arrival order, then they are
  acked; any other message is handled on its own, in its place, so order is kept. Under light
  load a batch is one message, so nothing waits for company.
- **Acknowledge after the work.** ``manual_ack=True``: a touch is PUBACKed only after its record is
  committed and its glows are handed to paho, so a relay that dies mid-way gets it redelivered
  (and the de-duplication record makes the redelivery harmless; a redelivery flagged DUP, or a
  repeat of a touch whose glows the broker may not have saved, is forwarded again:
  server/forwarding.py rule 5, server/confirmations.py — for which the relay notes when each
  broker connection ends, and its own start). An ack belongs to the
  connection the message came on; after a reconnect the broker redelivers anything unacked, so
  an ack for a message of an earlier connection is skipped, never sent on the new one (its
  packet id may by then name another message).
- **A glow nobody received is kept** for its lamp, from what its PUBACK says
  (server/glow_delivery.py).
- **Back-pressure without growth.** The relay asks the broker for at most ``queue_size``
  unacknowledged deliveries (MQTT 5 Receive Maximum) and acks only after handling, so at most
  ``queue_size`` QoS 1 messages wait in the inbox. QoS 0 messages (which Receive Maximum does
  not count) are admitted only while fewer than ``queue_size / 2`` wait, and dropped (counted)
  beyond that. The socket is read only between batches, so a slow store slows the reading (the
  broker's data waits in the socket), never grows memory. On the way out, paho's outgoing queue
  is bounded too (``max_queued``); when it is full the worker waits for PUBACKs (reading and
  writing meanwhile), which stops it taking new work. paho's inflight window is removed by
  default (``max_inflight=0``; its default of 20 plus a growing queue is quadratic, ARCHITECTURE.md,
  and any window costs a scan of the queue per PUBACK), so ``max_queued`` is the bound.
- **Graceful stop.** ``stop()``: stop taking work (later deliveries stay unacked in the broker's
  session), finish the messages read, wait for the broker to acknowledge every glow, then
  disconnect. A crash (SIGKILL) between committing a touch record and its glows leaving is
  covered by forwarding the broker's DUP redelivery again (tests/faults, RELIABILITY.md).

Everything runs in the worker thread — paho's ``_on_*`` callbacks too (inside ``poll``) — which
is the only user of the client and the store. Other threads only read events and metrics, and
``stop()`` sets one.

What a message means is handled elsewhere, each part given only what it needs: the forwarding
rule (server/forwarding.py) and carrying out its decisions (server/glow_delivery.py), pairing
requests (server/pair_requests.py), availability (server/availability.py), group states
(server/groupstate.py), start-up catch-up (server/catch_up.py), housekeeping
(server/housekeeping.py). This module is the edge: the paho client, the worker loop, batches,
acks and stop. It stays over 500 lines because that is one thread's state — the connection's
generation, the inbox, what awaits a PUBACK, stopping — which paho's callbacks, the worker loop
and the acks all change; split further, the parts would reach back into each other. A sixth of
it is this note.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from touchlamp.config.relay import RelaySettings
from touchlamp.errors import ConfigurationError
from touchlamp.lifecycle import StopsOnExit
from touchlamp.mqtt import reasons
from touchlamp.mqtt.client import connect_properties, new_client, tls_for
from touchlamp.mqtt.driver import MqttDriver
from touchlamp.protocol import Kind, ProtocolError, Topics
from touchlamp.server.availability import AvailabilityUpdates
from touchlamp.server.badmessages import BadMessages, LogThrottle
from touchlamp.server.catch_up import CatchUp
from touchlamp.server.confirmations import ConnectionEnds
from touchlamp.server.forwarding import Forward, ForwardingRule, Received
from touchlamp.server.glow_delivery import GlowDelivery
from touchlamp.server.glows_waiting import GlowsWaiting
from touchlamp.server.groupstate import GroupStates
from touchlamp.server.housekeeping import Housekeeping
from touchlamp.server.inbound import Inbound
from touchlamp.server.metrics import RelayMetrics
from touchlamp.server.pair_requests import PairRequests
from touchlamp.server.pairing import Pairing
from touchlamp.server.presence import Presence
from touchlamp.server.ratelimit import RateLimiter
from touchlamp.server.store.base import Store, StoreUnavailableError

__all__ = ["Relay", "RelayAuthError"]

_log = logging.getLogger(__name__)

_STORE_RETRY_SECONDS = (0.1, 0.5, 1.0, 2.0, 5.0)
_CONFIRM_KEEPALIVES = 2.0  # a dead broker is noticed within two keepalives (no PINGRESP)
# Messages the worker handles at once. Bigger batches share one store transaction
# among more touches, but the first glow of a batch waits for the whole batch to be decided.
_BATCH = 64
_IDLE_POLL_SECONDS = 0.5  # how long the worker waits for the broker when it has nothing to do
_STOP_GRACE_SECONDS = 3.0  # beyond stop()'s timeout: the DISCONNECT, the thread's end
_ACK_POLL_SECONDS = 0.05  # while it waits for PUBACKs (paho's queue full, or stopping)
_Result = TypeVar("_Result")


class RelayAuthError(ConfigurationError, RuntimeError):
    """The broker refused the relay's login; retrying cannot fix it."""


class _Resync:
    """Queue marker: re-publish every lamp's retained group state (at start-up), a slice at a
    time between touches (server/catch_up.py)."""


_RESYNC = _Resync()


class Relay(StopsOnExit):
    """One relay process's broker connection and worker. ``start()``, then ``stop()``.

    ``clock`` is wall time in seconds (touch records, codes, glow ``at``); ``monotonic`` drives
    the rate limiter, log throttling and latency. Both are injectable for tests.
    """

    def __init__(
        self,
        *,
        settings: RelaySettings,
        store: Store,
        metrics: RelayMetrics | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._store = store
        self.metrics = metrics if metrics is not None else RelayMetrics()
        self._monotonic = monotonic
        self._topics = Topics(settings.mqtt.topic_root)
        limits = settings.rate_limit
        # Glows count as saved by the broker once their connection outlived two keepalives; the
        # same clock as the store's received_ms.
        self._connection_ends = ConnectionEnds(
            window_seconds=_CONFIRM_KEEPALIVES * settings.mqtt.keepalive_seconds, clock=clock
        )
        self._rule = ForwardingRule(
            store=store,
            limiter=RateLimiter(per_second=limits.per_second, burst=limits.burst, clock=monotonic),
            clock=clock,
            mutual_window_seconds=settings.forwarding.mutual_window_seconds,
            connection_ends=self._connection_ends,
        )

        # Bounded by Receive Maximum and the QoS 0 rule (see the module's doc).
        self._inbox: collections.deque[Inbound | _Resync] = collections.deque()
        self._qos0_admit_below = settings.queue_size // 2
        self.metrics.queue_depth.set_function(lambda: len(self._inbox))
        self._catch_up = CatchUp(monotonic=monotonic)

        self._stopping = threading.Event()
        self._stop_deadline = 0.0  # monotonic; set by stop() before _stopping
        self._connected = threading.Event()
        self._finished = threading.Event()
        self._auth_error: str | None = None
        self._first_connect = True
        self._first_connect_note = True
        self._generation = 0  # which connection this is (acks are only valid on their own)
        self._outstanding = 0  # glows and states handed to paho, not yet PUBACKed
        self._heartbeat = monotonic()
        self._lost_at: float | None = None  # monotonic, while the broker connection is lost

        # What the messages mean, each part given what it needs; all publish through _publish.
        # Glows answered "no matching subscribers" (or refused for now), kept for their lamp.
        self._waiting = GlowsWaiting(clock=monotonic)
        self.metrics.glows_waiting.set_function(lambda: len(self._waiting))
        presence = Presence(store=store)
        bad = BadMessages(
            metrics=self.metrics,
            throttle=LogThrottle(interval=settings.bad_payload_log_seconds, clock=monotonic),
        )
        self._bad = bad
        self._states = GroupStates(store=store, topics=self._topics, publish=self._publish)
        self._glows = GlowDelivery(
            topics=self._topics,
            publish=self._publish,
            waiting=self._waiting,
            states=self._states,
            bad=bad,
            metrics=self.metrics,
            glow_expiry_seconds=settings.forwarding.glow_expiry_seconds,
            monotonic=monotonic,
        )
        self._pair_requests = PairRequests(
            pairing=Pairing(store=store, settings=settings.pairing, clock=clock),
            memberships=self._rule.memberships,
            topics=self._topics,
            publish=self._publish,
            states=self._states,
            bad=bad,
            metrics=self.metrics,
        )
        self._availability = AvailabilityUpdates(
            presence=presence,
            waiting=self._waiting,
            states=self._states,
            bad=bad,
            metrics=self.metrics,
        )
        self._housekeeping = Housekeeping(
            store=store,
            presence=presence,
            metrics=self.metrics,
            dedup_retention_hours=settings.forwarding.dedup_retention_hours,
            clock=clock,
            monotonic=monotonic,
        )
        self._client = self._make_client()
        self._net = MqttDriver(
            self._client,
            min_delay=settings.mqtt.reconnect_min_seconds,
            max_delay=settings.mqtt.reconnect_max_seconds,
            idle=self._stopping.wait,
            clock=monotonic,
        )
        self._worker = threading.Thread(target=self._work, name="relay-worker", daemon=True)

    # -- lifecycle (called from the owner's thread) ---------------------------------------------
    def start(self) -> None:
        self._note_previous_connection_end()
        mqtt_settings = self._settings.mqtt
        connect = connect_properties(session_expiry_seconds=mqtt_settings.session_expiry_seconds)
        connect.ReceiveMaximum = self._settings.queue_size
        self._net.connect_async(
            mqtt_settings.host,
            mqtt_settings.effective_port,
            keepalive=mqtt_settings.keepalive_seconds,
            clean_start=False,
            properties=connect,
        )
        self._worker.start()

    def _note_previous_connection_end(self) -> None:
        """Whatever broker connection the previous relay process had is gone: it ended by now,
        and no earlier than the last touch recorded (server/confirmations.py). Read here, before
        the worker owns the store."""
        self._connection_ends.ended()
        try:
            last = self._store.last_received_ms()
        except StoreUnavailableError as error:
            # The start itself still counts; only a restart long after a power cut misses this.
            _log.warning(
                "cannot read the newest touch record at start (%s): after a long outage, a "
                "repeat of a touch whose glows the broker lost may be dropped as a duplicate",
                error,
            )
            return
        if last is not None:
            self._connection_ends.ended_at(last)

    def stop(self, *, timeout: float = 15.0) -> None:
        """Stop taking work, finish what was taken, wait for the broker's acks, disconnect
        (the worker does all that and ends; this waits for it, ``timeout`` and a little)."""
        self._stop_deadline = self._monotonic() + timeout
        self._stopping.set()
        if self._worker.ident is None:
            return  # never started
        self._worker.join(timeout=timeout + _STOP_GRACE_SECONDS)
        if self._worker.is_alive():
            # Stuck in the store or on a full outgoing queue without a broker; it is a daemon
            # thread, and what it has not acked stays with the broker.
            _log.warning("relay worker still busy after %.0f s; leaving it", timeout)
        self._connected.clear()
        self.metrics.connected.set(0)

    def wait_connected(self, timeout: float) -> bool:
        """True once connected and subscribed (raises ``RelayAuthError`` on refused login)."""
        if self._connected.wait(timeout):
            return True
        if self._auth_error is not None:
            raise RelayAuthError(self._auth_error)
        return False

    @property
    def connected(self) -> bool:
        """Called from any thread (the health endpoint)."""
        return self._connected.is_set()

    @property
    def auth_error(self) -> str | None:
        return self._auth_error

    def healthy_worker(self, *, within: float) -> bool:
        """The worker has looped within ``within`` seconds (for the systemd watchdog)."""
        return self._worker.is_alive() and self._monotonic() - self._heartbeat < within

    # -- paho wiring ----------------------------------------------------------------------------
    def _make_client(self) -> mqtt.Client:
        settings = self._settings.mqtt
        client = new_client(
            settings.client_id,
            username=settings.username,
            password=settings.password,
            tls=tls_for(settings, setting="TOUCHLAMP_RELAY_MQTT__CA_FILE"),
            log_as=f"{__name__}.paho",
            manual_ack=True,
            max_inflight=settings.max_inflight,
            max_queued=settings.max_queued,
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        return client

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            reason = reasons.connack(reason_code.value)
            if reason.verdict is reasons.Verdict.STOP:
                self._auth_error = (
                    f"the broker refused the relay's login as {self._settings.mqtt.username!r} "
                    f"({reason}): {reason.fix}; check TOUCHLAMP_RELAY_MQTT__USERNAME and "
                    "TOUCHLAMP_RELAY_MQTT__PASSWORD (or …_PASSWORD_FILE), and the relay's "
                    "login on the broker"
                )
                _log.error("%s; not retrying", self._auth_error)
                self._finished.set()  # the worker ends, and closes the connection for good
            else:
                _log.warning("broker refused the connection: %s; retrying", reason)
            return
        self._generation += 1
        topics, share = self._topics, self._settings.mqtt.share_name
        # Retain-as-published: a retained touch or request is then flagged even when it is
        # delivered live, so it can be refused alike (see _handle).
        client.subscribe(
            [
                (
                    topics.shared(share, Kind.TOUCH),
                    SubscribeOptions(qos=1, retainAsPublished=True),
                ),
                (
                    topics.shared(share, Kind.PAIR),
                    SubscribeOptions(qos=1, retainAsPublished=True),
                ),
                # Retained availability only for a new subscription: with its session kept, a
                # restarted relay got what changed meanwhile queued, not all lamps again.
                (topics.every(Kind.AVAILABILITY), SubscribeOptions(qos=1, retainHandling=1)),
            ]
        )
        if self._first_connect:
            self._first_connect = False
            self._inbox.append(_RESYNC)
        if self._lost_at is not None:
            # As loud as the loss was (a warning): whoever read that one wants this one.
            _log.warning(
                "reconnected to the broker at %s after %.1f s",
                self._settings.mqtt.host,
                self._monotonic() - self._lost_at,
            )
            self._lost_at = None
        else:
            _log.info("connected to the broker at %s", self._settings.mqtt.host)
        if self._first_connect_note:
            self._first_connect_note = False
            self._note_receive_maximum(getattr(properties, "ReceiveMaximum", None))

    def _note_receive_maximum(self, broker_limit: object) -> None:
        window = self._settings.mqtt.max_inflight
        if isinstance(broker_limit, int) and (window == 0 or window > broker_limit):
            _log.info(
                "the broker asks for at most %d unacknowledged messages from the relay "
                "(Receive Maximum) and the relay may send %s; Mosquitto does not enforce this "
                "for QoS 1, another broker may: then set TOUCHLAMP_RELAY_MQTT__MAX_INFLIGHT=%d",
                broker_limit,
                "more" if window == 0 else window,
                broker_limit,
            )

    def _on_subscribe(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _mid: int,
        reason_codes: list[ReasonCode],
        _properties: Properties | None,
    ) -> None:
        refused = [code for code in reason_codes if code.is_failure]
        if refused:
            _log.error(
                "the broker refused the relay's subscriptions (%s): the relay's ACL must allow "
                "reading %s/lamp/+/touch, …/pair and …/availability",
                ", ".join(str(code) for code in refused),
                self._topics.root,
            )
            return
        self._connected.set()
        self.metrics.connected.set(1)

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        self._generation += 1
        # The broker may have died with glows it acknowledged but had not saved yet.
        self._connection_ends.ended()
        self._connected.clear()
        self.metrics.connected.set(0)
        if not (self._stopping.is_set() or self._finished.is_set()):
            if self._lost_at is None:
                self._lost_at = self._monotonic()
            _log.warning("lost the broker connection (%s); reconnecting", reason_code)

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        if self._stopping.is_set():
            return  # not acked: it stays in the broker's session for the next start
        item = Inbound.from_paho(msg, generation=self._generation, received=self._monotonic())
        if msg.qos == 0 and len(self._inbox) >= self._qos0_admit_below:
            self.metrics.bad_messages.labels(kind="qos0-overflow").inc()
            return
        self._inbox.append(item)

    def _on_publish(
        self,
        _client: mqtt.Client,
        _userdata: object,
        mid: int,
        reason_code: ReasonCode,
        _properties: Properties,
    ) -> None:
        self._outstanding = max(0, self._outstanding - 1)
        self._glows.answered(mid, reason_code)

    # -- worker ---------------------------------------------------------------------------------
    def _work(self) -> None:
        try:
            while not self._finished.is_set():
                self._heartbeat = self._monotonic()
                if self._stopping.is_set() and not self._inbox:
                    self._wait_for_acks()
                    break
                busy = self._inbox or self._catch_up
                self._net.poll(0.0 if busy else _IDLE_POLL_SECONDS)
                while self._inbox and not self._finished.is_set():
                    count = min(len(self._inbox), _BATCH)
                    self._handle_batch([self._inbox.popleft() for _ in range(count)])
                    self._net.flush()  # this batch's glows and acks leave before the next one
                self._glows.send_waiting()
                if not self._inbox and not self._stopping.is_set():
                    self._catch_up.run_slice(
                        presence=self._handle_one, states=self._publish_states_retrying
                    )
                    self._net.flush()
                self._housekeeping.run_if_due()
        finally:
            if len(self._waiting):
                _log.warning(
                    "stopping with %d glow(s) kept for lamps that were away; they are lost "
                    "(they live in the relay's memory, RELIABILITY.md)",
                    len(self._waiting),
                )
            self._net.close()
            self._connected.clear()
            self.metrics.connected.set(0)

    def _wait_for_acks(self) -> None:
        """Stopping: until the broker has acknowledged every glow (or the deadline passes)."""
        while self._outstanding and self._connected.is_set():
            if self._monotonic() >= self._stop_deadline:
                _log.warning(
                    "%d messages not yet acknowledged by the broker at stop", self._outstanding
                )
                return
            self._heartbeat = self._monotonic()
            self._net.poll(_ACK_POLL_SECONDS)

    def _handle_batch(self, batch: list[Inbound | _Resync]) -> None:
        """Runs of touches together, anything else on its own, all in the order received."""
        touches: list[tuple[str, Inbound]] = []
        for item in batch:
            if isinstance(item, Inbound) and (sender := self._touch_sender(item)) is not None:
                touches.append((sender, item))
                continue
            if isinstance(item, Inbound) and (lamp_id := self._catch_up_lamp(item)) is not None:
                # Acked now (the broker sends it again at the next subscription), handled
                # later without a second ack (QoS 0 here).
                self._ack(item)
                self._catch_up.defer_presence(lamp_id, replace(item, qos=0))
                continue
            self._handle_touches(touches)
            touches = []
            self._handle_one(item)
        self._handle_touches(touches)

    def _touch_sender(self, item: Inbound) -> str | None:
        """The lamp id of a touch to forward; None for anything else (``_handle`` takes it)."""
        if item.retained:
            return None
        try:
            match = self._topics.parse(item.topic)
        except ProtocolError:
            return None
        return match.lamp_id if match.kind is Kind.TOUCH else None

    def _catch_up_lamp(self, item: Inbound) -> str | None:
        """The lamp of a retained availability (sent at subscription: catch-up), else None."""
        if not item.retained:
            return None
        try:
            match = self._topics.parse(item.topic)
        except ProtocolError:
            return None
        return match.lamp_id if match.kind is Kind.AVAILABILITY else None

    def _publish_states_retrying(self, lamp_ids: list[str]) -> None:
        self._retrying(lambda: self._states.publish(lamp_ids), what="group states")

    def _handle_one(self, item: Inbound | _Resync) -> None:
        try:
            self._retrying(lambda: self._handle(item), what="the message")
        except Exception:  # noqa: BLE001  the worker must outlive any one bad message
            where = item.topic if isinstance(item, Inbound) else "resync"
            _log.exception("failed to handle a message on %s; dropped", where)
            if isinstance(item, Inbound):
                self._ack(item)

    def _retrying(self, call: Callable[[], _Result], *, what: str) -> _Result | None:
        """``call()``, retried while the store is unavailable; None once it stayed so."""
        for delay in (*_STORE_RETRY_SECONDS, None):
            try:
                return call()
            except StoreUnavailableError as error:
                if delay is None or self._stopping.is_set():
                    # Not acked: the broker redelivers it on the next connection.
                    _log.error("store unavailable, leaving %s to the broker: %s", what, error)
                    return None
                _log.warning("store unavailable (%s); retrying in %.1f s", error, delay)
                self._pause(delay)
        return None

    def _pause(self, seconds: float) -> None:
        """Wait (until stopped), serving the broker connection: keep-alive pings, PUBACKs. What
        is read meanwhile waits in the inbox, after the batch being handled."""
        until = self._monotonic() + seconds
        while not self._stopping.is_set() and (left := until - self._monotonic()) > 0:
            self._net.poll(min(left, _IDLE_POLL_SECONDS))

    def _handle(self, item: Inbound | _Resync) -> None:
        """Any message but a touch to forward (``_handle_touches`` takes those)."""
        if isinstance(item, _Resync):
            lamps = self._store.list_lamps()
            self._catch_up.defer_states([lamp.id for lamp in lamps])
            self.metrics.lamps_online.set(sum(1 for lamp in lamps if lamp.online))
            return
        try:
            match = self._topics.parse(item.topic)
        except ProtocolError:
            self._bad.reject("unroutable", item, "not a lamp topic")
            self._ack(item)
            return
        if item.retained and match.kind in (Kind.TOUCH, Kind.PAIR):
            # Never retained by a lamp (PROTOCOL.md); one left by a misconfigured client would
            # come back at every (re)subscription — Mosquitto 2.0.11 replays retained messages
            # even to shared subscriptions — and light the group again, or repeat a request.
            self._bad.reject("retained", item, "a retained touch or pairing request is ignored")
        elif match.kind is Kind.PAIR:
            self._pair_requests.handle(match.lamp_id, item)
        elif match.kind is Kind.AVAILABILITY:
            if not item.retained:  # newer than a deferred retained one
                self._catch_up.superseded(match.lamp_id)
            self._availability.handle(match.lamp_id, item)
        self._ack(item)

    def _handle_touches(self, touches: list[tuple[str, Inbound]]) -> None:
        """Decide a run of touches at once (one store transaction), publish their glows in
        order, then ack them all."""
        if not touches:
            return
        try:
            screened = self._rule.screen(
                [
                    Received(sender, item.payload, item.topic, item.redelivered)
                    for sender, item in touches
                ]
            )
            decisions = self._retrying(
                lambda: self._rule.decide_all(screened), what=f"{len(touches)} touches"
            )
        except Exception:  # noqa: BLE001  the worker must outlive any one bad message
            if len(touches) > 1:
                # One by one, to drop only the culprit; as possible repeats (rule 5), so that
                # if the batch was recorded before it failed, the others' glows still go out.
                for sender, item in touches:
                    self._handle_touches([(sender, replace(item, redelivered=True))])
                return
            _log.exception("failed to handle a touch on %s; dropped", touches[0][1].topic)
            decisions = None
            self._ack(touches[0][1])
        if decisions is None:
            return
        self.metrics.touches_received.inc(len(touches))
        forwarded = resent = glows = 0
        for (sender, item), decision in zip(touches, decisions, strict=True):
            try:
                self._glows.carry_out(sender, item, decision)
            except Exception:  # noqa: BLE001  the others' glows must still go out
                _log.exception("failed to forward a touch on %s", item.topic)
            if isinstance(decision, Forward):
                glows += len(decision.glows)
                resent += decision.repeat
                forwarded += not decision.repeat
        # Counted once per batch (each bump takes a lock), before the acks like the glows.
        self.metrics.glows_forwarded.inc(glows)
        self.metrics.touches_forwarded.inc(forwarded)
        self.metrics.touches_resent.inc(resent)
        self._ack_all([item for _, item in touches])

    # -- publishing and acking (worker thread) --------------------------------------------------
    def _publish(
        self, topic: str, payload: bytes, *, retain: bool = False, props: Properties | None = None
    ) -> int:
        """Hand a QoS 1 message to paho, waiting while its outgoing queue is full; its mid."""
        while True:
            info = self._client.publish(topic, payload, qos=1, retain=retain, properties=props)
            if info.rc != MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
                # MQTT_ERR_NO_CONN is fine: paho keeps QoS 1 messages and sends them on reconnect.
                self._outstanding += 1
                return info.mid
            # Back-pressure: send what is queued and read PUBACKs (they shrink paho's queue).
            # Messages read meanwhile wait in the inbox, after the batch being handled.
            self._heartbeat = self._monotonic()
            self._net.flush()
            self._net.poll(_ACK_POLL_SECONDS)

    def _ack(self, item: Inbound) -> None:
        self._ack_all([item])

    def _ack_all(self, items: list[Inbound]) -> None:
        for item in items:
            # An ack for an earlier connection is skipped: the broker redelivers the message,
            # de-dup absorbs it. QoS 0 has no ack.
            if item.qos and item.generation == self._generation:
                self._client.ack(item.mid, item.qos)

    def __repr__(self) -> str:
        return f"Relay(client_id={self._settings.mqtt.client_id!r})"
