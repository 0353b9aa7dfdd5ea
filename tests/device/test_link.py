"""The lamp's MQTT link against a real Mosquitto, with a raw paho client playing the relay."""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import queue
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.device.link_support import (
    Certificates,
    EventLog,
    Received,
    RelayClient,
    ids_in_seen_file,
)
from tests.support.broker import BrokerFixture, start_managed_broker
from tests.support.ports import free_port
from tests.support.proxy import Direction, FaultProxy, Packet, PacketType
from tests.support.waiting import wait_until
from touchlamp.config.broker import TlsSettings
from touchlamp.config.device import DeviceSettings
from touchlamp.device.clock import ManualClock
from touchlamp.device.dedup import SEEN_FILE
from touchlamp.device.events import (
    Connected,
    Disconnected,
    GlowReceived,
    GroupChanged,
    TouchOutcome,
)
from touchlamp.device.link import LampLink
from touchlamp.device.link_api import LinkError, LinkTimeoutError
from touchlamp.device.outbox import OUTBOX_FILE, OutboxStats
from touchlamp.protocol import (
    Glow,
    GroupMember,
    GroupState,
    Kind,
    PairAction,
    PairRequest,
    PairResponse,
    Topics,
    decode_pair_request,
    decode_touch,
    encode,
)

_ids = itertools.count()


class Setup:
    """Makes lamps and relay clients on the test's broker and closes them all at its end."""

    def __init__(self, broker: BrokerFixture, tmp_path: Path) -> None:
        self.broker = broker
        self.topics: Topics = broker.topics
        self.tmp_path = tmp_path
        self._passwords: dict[str, str] = {}
        self._closers: list[Callable[[], None]] = []

    def lamp(
        self,
        lamp_id: str = "lamp-a",
        *,
        port: int | None = None,
        password: str | None = None,
        start: bool = True,
        **options: object,
    ) -> tuple[LampLink, EventLog]:
        """A link for ``lamp_id`` (created on the broker once); a second one for the same id
        is the same lamp after a restart: same state dir, same credentials."""
        events = EventLog()
        link = LampLink(
            lamp_id=lamp_id,
            password=password or self.password(lamp_id),
            sink=events,
            state_dir=self.tmp_path / lamp_id,
            host=self.broker.host,
            port=port or self.broker.port,
            topic_root=self.topics.root,
            reconnect_min_seconds=0.05,
            reconnect_max_seconds=0.3,
            **options,  # type: ignore[arg-type]
        )
        self._closers.append(link.stop)
        if start:
            link.start()
        return link, events

    def password(self, lamp_id: str) -> str:
        """``lamp_id``'s password on the test broker (created on first use)."""
        if lamp_id not in self._passwords:
            self._passwords[lamp_id] = self.broker.add_lamp(lamp_id)
        return self._passwords[lamp_id]

    def relay(self, *filters: str, persistent: bool = False) -> RelayClient:
        client_id = f"relay-{next(_ids)}"
        username, password = self.broker.relay_login(client_id)
        client = RelayClient(
            host=self.broker.host,
            port=self.broker.port,
            username=username,
            password=password,
            client_id=client_id,
            persistent=persistent,
        )
        self._closers.append(client.close)
        if filters:
            client.subscribe(*filters)
        return client

    def cable(self) -> FaultProxy:
        """A proxy to the broker whose ``cut()`` drops every connection without a word."""
        cable = FaultProxy(target_port=self.broker.port)
        self._closers.append(cable.close)
        return cable

    def close(self) -> None:
        for close in reversed(self._closers):
            close()


@pytest.fixture
def setup(broker: BrokerFixture, tmp_path: Path) -> Iterator[Setup]:
    made = Setup(broker, tmp_path)
    yield made
    made.close()


def glow(touch: str, *, sender: str = "lamp-b", color: str = "#00ff88") -> bytes:
    return encode(Glow(touch=touch, sender=sender, color=color, mutual=False, at=1_700_000_000_000))


# ---- touches ---------------------------------------------------------------------------------


def test_a_touch_goes_out_once_with_seq_stream_qos1_not_retained(setup: Setup) -> None:
    relay = setup.relay(setup.topics.every(Kind.TOUCH))
    link, events = setup.lamp()
    events.wait_for(Connected)

    receipt = link.send_touch("#FF8800")

    assert receipt.delivery is TouchOutcome.SENT
    message = relay.next()
    assert message.topic == setup.topics.touch("lamp-a")
    assert (message.qos, message.retain) == (1, False)
    touch = decode_touch(message.topic, message.payload)
    assert touch == receipt.touch
    assert (touch.seq, touch.stream, touch.color) == (0, link.stream, "#ff8800")
    # Acknowledged by the broker, so gone from the outbox.
    wait_until(lambda: link.outbox_stats().queued == 0, "the PUBACK empties the outbox")
    assert link.send_touch("#ff8800").touch.seq == 1
    assert decode_touch(message.topic, relay.next().payload).seq == 1


def test_a_touch_made_while_the_broker_is_down_goes_out_when_it_is_back(setup: Setup) -> None:
    relay = setup.relay(setup.topics.every(Kind.TOUCH), persistent=True)
    link, events = setup.lamp()
    events.wait_for(Connected)

    setup.broker.managed.stop()
    events.wait_for(Disconnected)
    receipt = link.send_touch("#123456")
    assert receipt.delivery is TouchOutcome.QUEUED
    assert link.outbox_stats().queued == 1

    setup.broker.managed.start()
    events.wait_for(Connected, count=2)
    delivered = decode_touch(setup.topics.touch("lamp-a"), relay.next().payload)
    assert delivered == receipt.touch
    wait_until(lambda: link.outbox_stats().queued == 0, "the PUBACK empties the outbox")


def test_touches_queued_before_a_restart_go_out_in_order_afterwards(setup: Setup) -> None:
    relay = setup.relay(setup.topics.every(Kind.TOUCH))
    before, _ = setup.lamp(start=False)  # e.g. no network since boot, then a power cut
    made = [before.send_touch(color).touch for color in ("#000001", "#000002", "#000003")]
    before.stop()

    after, events = setup.lamp()
    events.wait_for(Connected)

    received = [decode_touch(m.topic, m.payload) for m in (relay.next() for _ in made)]
    assert received == made
    assert [touch.seq for touch in received] == [0, 1, 2]
    assert after.stream == before.stream
    assert after.send_touch("#000004").touch.seq == 3


def test_outbox_bound_and_expiry_are_counted(setup: Setup) -> None:
    clock = ManualClock(start=dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC))
    relay = setup.relay(setup.topics.every(Kind.TOUCH))
    link, events = setup.lamp(
        start=False, clock=clock, outbox_max_entries=2, outbox_max_age_seconds=3600.0
    )
    for color in ("#000001", "#000002", "#000003"):  # one too many: the first is dropped
        link.send_touch(color)
    clock.advance(2 * 3600)  # both survivors are now too old to be worth a glow
    fresh = link.send_touch("#000004").touch

    link.start()
    events.wait_for(Connected)

    assert decode_touch(setup.topics.touch("lamp-a"), relay.next().payload) == fresh
    stats = link.outbox_stats()
    assert (stats.dropped, stats.expired) == (1, 2)
    wait_until(lambda: link.outbox_stats().queued == 0, "the PUBACK empties the outbox")


def test_touches_acknowledged_before_their_disk_write_all_leave_the_outbox(setup: Setup) -> None:
    """The disk write comes after the publish, so a PUBACK may be handled first; with
    ``confirm_seconds=0`` it removes the touch at once. Either order, none is left behind."""
    relay = setup.relay(setup.topics.every(Kind.TOUCH))
    link, events = setup.lamp(confirm_seconds=0.0)
    events.wait_for(Connected)

    made = [link.send_touch(f"#0000{n:02x}").touch for n in range(40)]

    assert [decode_touch(m.topic, m.payload) for m in (relay.next() for _ in made)] == made
    emptied = OutboxStats(
        queued=0, unconfirmed=0, dropped=0, expired=0, stream=link.stream, next_seq=len(made)
    )
    wait_until(lambda: link.outbox_stats() == emptied, "every PUBACK handled, nothing queued")
    link.stop()
    assert _stored_touches(setup.tmp_path / "lamp-a") == []


# The lamp of the next test, in a process of its own: it sends a touch, then a second one and
# dies once the broker has acknowledged it but before its outbox wrote it to disk.
_CRASHING_LAMP = """
import os, sys, threading
from pathlib import Path
from touchlamp.device.link import LampLink
from touchlamp.device.events import Connected
from touchlamp.device.outbox import Outbox

host, port, root, password, state_dir = sys.argv[1:]
acknowledged = threading.Condition()
seqs = set()
acknowledge, persist = Outbox.acknowledge, Outbox.persist

def acknowledge_and_tell(outbox, seq):
    acknowledge(outbox, seq)
    with acknowledged:
        seqs.add(seq)
        acknowledged.notify_all()

def persist_unless_it_is_the_second(outbox, seq):
    if seq == 1:
        with acknowledged:
            acknowledged.wait_for(lambda: 1 in seqs, timeout=30)
        os._exit(3)  # the power goes: nothing more reaches the disk
    persist(outbox, seq)

Outbox.acknowledge = acknowledge_and_tell
Outbox.persist = persist_unless_it_is_the_second
connected = threading.Event()
link = LampLink(
    lamp_id="lamp-a", password=password, host=host, port=int(port), topic_root=root,
    state_dir=Path(state_dir), sink=lambda e: isinstance(e, Connected) and connected.set(),
)
link.start()
connected.wait(30)
link.send_touch("#000001")
link.send_touch("#000002")
os._exit(4)  # not reached
"""


def test_a_crash_between_the_publish_and_the_disk_write_repeats_nothing_but_sent_touches(
    setup: Setup,
) -> None:
    """The broker has touch 1, the lamp's disk does not: after the restart touch 0 (written,
    unconfirmed) goes again — a repeat the relay drops — touch 1 does not, and the next touch
    gets a seq of its own, so the relay does not take it for a repeat either."""
    relay = setup.relay(setup.topics.every(Kind.TOUCH))
    lamp_dir = setup.tmp_path / "lamp-a"
    crashed = subprocess.run(
        [sys.executable, "-c", _CRASHING_LAMP, setup.broker.host, str(setup.broker.port),
         setup.topics.root, setup.password("lamp-a"), str(lamp_dir)],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert crashed.returncode == 3, crashed.stderr.decode()
    topic = setup.topics.touch("lamp-a")
    before = [decode_touch(topic, relay.next().payload) for _ in range(2)]
    assert [touch.seq for touch in before] == [0, 1]
    assert _stored_touches(lamp_dir) == [0]

    link, events = setup.lamp()
    events.wait_for(Connected)
    after = link.send_touch("#000003").touch

    assert decode_touch(topic, relay.next().payload) == before[0]  # the repeat
    assert decode_touch(topic, relay.next().payload) == after  # not touch 1 again
    assert after.seq > 1
    assert after.stream == before[1].stream


def _stored_touches(state_dir: Path) -> list[int]:
    """The seqs in a lamp's outbox file, read from outside the lamp."""
    with sqlite3.connect(state_dir / OUTBOX_FILE) as db:
        return [seq for (seq,) in db.execute("SELECT seq FROM touch ORDER BY seq")]


# The lamp of the next test, in a process of its own: it says when it is connected and each
# glow it hands on (to what would be its core), and runs until it is killed.
_TELLING_LAMP = """
import sys, threading
from pathlib import Path
from touchlamp.device.link import LampLink
from touchlamp.device.events import Connected, GlowReceived

host, port, root, password, state_dir, hang = sys.argv[1:]

def sink(event):
    if isinstance(event, Connected):
        print("connected", flush=True)
    elif isinstance(event, GlowReceived) and hang == "hang":
        print("handed", event.touch, flush=True)
        threading.Event().wait()  # handed on, never shown: the lamp's loop stuck, or dying
    elif isinstance(event, GlowReceived):
        print("glow", event.touch, flush=True)

link = LampLink(
    lamp_id="lamp-a", password=password, host=host, port=int(port), topic_root=root,
    state_dir=Path(state_dir), sink=sink,
)
link.start()
threading.Event().wait()
"""


class TellingLamp:
    """``_TELLING_LAMP`` as a process; ``lines`` gets what it says."""

    def __init__(self, setup: Setup, port: int, *, hang: bool = False) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.said: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-c", _TELLING_LAMP, setup.broker.host, str(port),
             setup.topics.root, setup.password("lamp-a"), str(setup.tmp_path / "lamp-a"),
             "hang" if hang else "show"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self.lines.put(raw.decode().strip())

    def wait_for(self, line: str) -> None:
        while True:
            try:
                said = self.lines.get(timeout=30)
            except queue.Empty:
                raise AssertionError(
                    f"the lamp did not say {line!r}; it said {self.said}"
                ) from None
            self.said.append(said)
            if said == line:
                return

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(30)
        self._reader.join(30)
        if self.process.stdout is not None:
            self.process.stdout.close()
        while not self.lines.empty():
            self.said.append(self.lines.get())


def test_a_lamp_killed_before_it_kept_a_glow_gets_it_again(setup: Setup) -> None:
    """The glow's PUBACK leaves only once the lamp has shown the glow and recorded it as seen
    (issue 18, RELIABILITY.md changes 12 and 16): a lamp killed (SIGKILL) in between — here
    its seen-glow file is held locked by the test, so the write waits — gets it again from the
    broker after the restart and shows it again: twice in all, never not at all."""
    relay = setup.relay()
    proxy = FaultProxy(target_port=setup.broker.port)
    delivered, acknowledged = threading.Event(), threading.Event()
    glow_packet: list[int] = []

    def watch(direction: Direction, packet: Packet) -> None:
        if direction is Direction.DOWN and packet.topic == setup.topics.glow("lamp-a"):
            glow_packet.append(packet.packet_id or 0)
            delivered.set()
        elif packet.kind == PacketType.PUBACK and packet.packet_id in glow_packet:
            acknowledged.set()

    proxy.watch(watch)
    first = TellingLamp(setup, proxy.port)
    try:
        first.wait_for("connected")
        seen = sqlite3.connect(setup.tmp_path / "lamp-a" / SEEN_FILE, isolation_level=None)
        seen.execute("BEGIN IMMEDIATE")  # the lamp's write of the glow's id waits for this
        relay.publish(setup.topics.glow("lamp-a"), glow("lamp-b:7:1"))
        assert delivered.wait(30), "the broker did not deliver the glow"
        first.wait_for("glow lamp-b:7:1")  # shown; its id waits to be written
        early = acknowledged.wait(1.0)  # time enough for a lamp that acks on reading to do so
        first.kill()
        seen.execute("ROLLBACK")
        seen.close()
    finally:
        first.kill()
        proxy.close()
    assert not early, "the PUBACK left before the glow's id was recorded as seen"

    second = TellingLamp(setup, setup.broker.port)
    try:
        second.wait_for("glow lamp-b:7:1")
        relay.publish(setup.topics.glow("lamp-a"), glow("lamp-b:7:2"))
        second.wait_for("glow lamp-b:7:2")
    finally:
        second.kill()
    glows = [line for line in second.said if line.startswith("glow")]
    assert glows == ["glow lamp-b:7:1", "glow lamp-b:7:2"], glows


def test_a_lamp_killed_after_taking_a_glow_before_showing_it_shows_it_after_the_restart(
    setup: Setup,
) -> None:
    """A glow's id is recorded as seen only once the glow is shown (RELIABILITY.md, change 16):
    a lamp killed (SIGKILL) after its link handed the glow on but before it lit up — here the
    receiver never returns — gets it again from the broker and shows it, instead of dropping it
    as seen. (Before: recorded first, so the redelivery was dropped and the glow never shown.)"""
    relay = setup.relay()
    first = TellingLamp(setup, setup.broker.port, hang=True)
    try:
        first.wait_for("connected")
        relay.publish(setup.topics.glow("lamp-a"), glow("lamp-b:7:1"))
        first.wait_for("handed lamp-b:7:1")
    finally:
        first.kill()

    second = TellingLamp(setup, setup.broker.port)
    try:
        second.wait_for("glow lamp-b:7:1")
        relay.publish(setup.topics.glow("lamp-a"), glow("lamp-b:7:1"))  # a repeat: dropped
        relay.publish(setup.topics.glow("lamp-a"), glow("lamp-b:7:2"))
        second.wait_for("glow lamp-b:7:2")
    finally:
        second.kill()
    assert [line for line in second.said if line.startswith("glow")] == [
        "glow lamp-b:7:1",
        "glow lamp-b:7:2",
    ]


def test_a_restart_says_what_the_touches_it_sends_again_are(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    """Every restart sends the touches of the last two keepalives again (delivered, not yet
    confirmed): the log says so instead of "N queued touch(es) sent" (issue 15)."""
    caplog.set_level(logging.INFO, logger="touchlamp.device.link")
    relay = setup.relay(setup.topics.every(Kind.TOUCH))
    link, events = setup.lamp()
    events.wait_for(Connected)
    link.send_touch("#000001")
    relay.next()
    wait_until(lambda: link.outbox_stats().unconfirmed == 1, "the touch acknowledged")
    link.stop()
    caplog.clear()
    _, again = setup.lamp()
    again.wait_for(Connected)
    [said] = [r.getMessage() for r in caplog.records if " connected to " in r.getMessage()]
    assert "sent the 1 touch(es) its outbox holds" in said
    assert "sent before and not yet confirmed (the relay drops those it already has)" in said


# ---- glows, group, bad messages ---------------------------------------------------------------


def test_a_redelivered_glow_is_shown_once_even_after_a_restart(setup: Setup) -> None:
    relay = setup.relay()
    glow_topic = setup.topics.glow("lamp-a")
    link, events = setup.lamp()
    events.wait_for(Connected)

    relay.publish(glow_topic, glow("lamp-b:7:1"))
    relay.publish(glow_topic, glow("lamp-b:7:1"))
    relay.publish(glow_topic, glow("lamp-b:7:2"))
    events.wait_for(GlowReceived, lambda e: e.touch == "lamp-b:7:2")
    assert [e.touch for e in events.of(GlowReceived)] == ["lamp-b:7:1", "lamp-b:7:2"]
    assert events.of(GlowReceived)[0].color == "#00ff88"

    link.stop()
    _, again = setup.lamp()
    again.wait_for(Connected)
    relay.publish(glow_topic, glow("lamp-b:7:2"))
    relay.publish(glow_topic, glow("lamp-b:7:3"))
    again.wait_for(GlowReceived, lambda e: e.touch == "lamp-b:7:3")
    assert [e.touch for e in again.of(GlowReceived)] == ["lamp-b:7:3"]


def test_shown_glows_reach_the_seen_file_at_a_checkpoint_soon_after(setup: Setup) -> None:
    """The link checkpoints the seen glows itself (not SQLite, in front of a glow)."""
    relay = setup.relay()
    _, events = setup.lamp()
    events.wait_for(Connected)

    relay.publish(setup.topics.glow("lamp-a"), glow("lamp-b:5:1"))
    events.wait_for(GlowReceived)

    wait_until(
        lambda: ids_in_seen_file(setup.tmp_path / "lamp-a") == ["lamp-b:5:1"],
        "the glow's id in the database file",
    )


def test_a_malformed_glow_is_reported_and_the_link_carries_on(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    relay = setup.relay()
    glow_topic = setup.topics.glow("lamp-a")
    link, events = setup.lamp()
    events.wait_for(Connected)

    relay.publish(glow_topic, b'{"touch": "lamp-b:1:1", "color": "red"}')
    relay.publish(glow_topic, b"\xff\xfe not even text")
    relay.publish(glow_topic, glow("lamp-b:1:2"))

    assert events.wait_for(GlowReceived).touch == "lamp-b:1:2"  # in order: after the two bad
    assert len(events.of(GlowReceived)) == 1
    warnings = [r.getMessage() for r in caplog.records if "dropped a bad message" in r.getMessage()]
    assert len(warnings) == 2
    assert all(glow_topic in warning for warning in warnings)
    assert "not a valid Glow" in warnings[0]
    assert "not UTF-8" in warnings[1]
    assert "not even text" in warnings[1]  # a safe excerpt of the payload, for the log reader
    assert link.connected


def test_the_retained_group_state_arrives(setup: Setup) -> None:
    relay = setup.relay()
    state = GroupState(
        group="home",
        members=[GroupMember(id="lamp-b", name="Bea", color="#00ff88", online=True)],
    )
    relay.publish(setup.topics.group("lamp-a"), encode(state), retain=True)

    _, events = setup.lamp()

    assert events.wait_for(GroupChanged) == GroupChanged.from_message(state)


# ---- availability -----------------------------------------------------------------------------


def test_online_is_retained_and_offline_is_the_will_when_the_connection_drops(
    setup: Setup,
) -> None:
    availability = setup.topics.availability("lamp-a")
    cable = setup.cable()
    _, events = setup.lamp(port=cable.port)
    events.wait_for(Connected)

    watcher = setup.relay(availability)  # subscribes late: sees the retained value
    first = watcher.next()
    assert (first.payload, first.retain, first.qos) == (b"online", True, 1)

    cable.cut()  # no DISCONNECT: the broker publishes the will
    assert watcher.next().payload == b"offline"
    events.wait_for(Disconnected)
    events.wait_for(Connected, count=2)
    assert watcher.next().payload == b"online"


def test_stop_publishes_offline_retained(setup: Setup) -> None:
    availability = setup.topics.availability("lamp-a")
    link, events = setup.lamp()
    events.wait_for(Connected)

    link.stop()

    assert events.wait_for(Disconnected)
    late = setup.relay(availability).next()
    assert (late.payload, late.retain) == (b"offline", True)


# ---- credentials ------------------------------------------------------------------------------


@pytest.mark.allow_error_logs
def test_a_wrong_password_is_reported_once_and_not_retried(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    cable = setup.cable()
    link, events = setup.lamp(port=cable.port, password="not-the-password")

    rejected = events.wait_for(Disconnected, lambda event: event.auth_failed)

    assert rejected.reason in ("Bad User Name or Password (0x86)", "Not authorized (0x87)")
    with pytest.raises(LinkError, match="refused lamp lamp-a's credentials"):
        link.request(PairRequest(action=PairAction.STATUS), timeout=1.0)
    # With reconnects 0.05-0.3 s apart a retry loop would have knocked several times by now.
    assert not cable.wait_accepted(2, timeout=1.0)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and "refused" in r.message]
    assert len(errors) == 1
    assert "not retrying" in errors[0].getMessage()
    assert link.send_touch("#ffffff").delivery is TouchOutcome.QUEUED


# ---- pairing requests -------------------------------------------------------------------------


def answer_pairing(relay: RelayClient, message: Received) -> None:
    """A raw pairing service: answers each request on its response topic."""
    request = decode_pair_request(message.topic, message.payload)
    assert message.response_topic is not None
    response = PairResponse(action=request.action, ok=True, code="ABCD-1234", members=["lamp-a"])
    relay.publish(
        message.response_topic, encode(response), correlation=message.correlation, wait=False
    )


def test_a_pairing_request_gets_its_answer(setup: Setup) -> None:
    responder = setup.relay(setup.topics.every(Kind.PAIR))
    responder.handler = answer_pairing
    link, _events = setup.lamp()

    response = link.request(PairRequest(action=PairAction.CREATE), timeout=20.0)

    assert (response.ok, response.code, response.action) == (True, "ABCD-1234", PairAction.CREATE)
    request = responder.next()
    assert request.topic == setup.topics.pair("lamp-a")
    assert request.response_topic == setup.topics.pair_response("lamp-a")
    assert request.correlation is not None
    assert len(request.correlation) == 16


def test_a_refusal_of_a_request_nobody_waits_for_is_logged(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    """A colour announced is fire and forget: if the pairing service refuses it, the owner
    reading the log learns why."""

    def refuse(relay: RelayClient, message: Received) -> None:
        request = decode_pair_request(message.topic, message.payload)
        assert message.response_topic is not None
        refusal = PairResponse(action=request.action, ok=False, error="not-paired")
        relay.publish(
            message.response_topic, encode(refusal), correlation=message.correlation, wait=False
        )

    responder = setup.relay(setup.topics.every(Kind.PAIR))
    responder.handler = refuse
    link, events = setup.lamp()
    events.wait_for(Connected)

    link.send_request(PairRequest(action=PairAction.COLOR, color="#123456"))

    wait_until(
        lambda: any(
            "the pairing service refused color: not-paired" in r.getMessage()
            for r in caplog.records
            if r.levelno == logging.WARNING
        ),
        "the warning about the refused announcement",
    )


def test_a_pairing_request_without_a_relay_times_out(setup: Setup) -> None:
    link, events = setup.lamp()
    events.wait_for(Connected)

    with pytest.raises(LinkTimeoutError, match="is the relay running"):
        link.request(PairRequest(action=PairAction.STATUS), timeout=0.5)


def test_glows_sent_while_the_lamp_was_off_arrive_when_it_is_back(setup: Setup) -> None:
    # The persistent session at work: clean_start=False and a session expiry, from the very
    # first connection of every process (paho's default would start each process clean).
    relay = setup.relay()
    link, events = setup.lamp()
    events.wait_for(Connected)
    link.stop()

    relay.publish(setup.topics.glow("lamp-a"), glow("lamp-b:9:1"))

    _, again = setup.lamp()
    assert again.wait_for(GlowReceived).touch == "lamp-b:9:1"
    assert again.wait_for(Connected).session_present


def test_a_glow_that_waited_while_the_lamp_restarted_is_aged_by_its_expiry(setup: Setup) -> None:
    # Issue 13: the relay's expiry interval, learnt from a glow delivered at once, used to be
    # forgotten with the process: the first glows after a restart were taken as 0 s old, so
    # LOOKS__GLOW_MAX_AGE_SECONDS let a stale one glow.
    relay = setup.relay()
    link, events = setup.lamp()
    events.wait_for(Connected)
    relay.publish(setup.topics.glow("lamp-a"), glow("lamp-b:9:1"), expiry=3600)
    assert events.wait_for(GlowReceived).waited_seconds == 0.0
    link.stop()

    relay.publish(setup.topics.glow("lamp-a"), glow("lamp-b:9:2"), expiry=3600)
    time.sleep(2.2)  # the broker counts the expiry down in whole seconds

    _, again = setup.lamp()
    waited = again.wait_for(GlowReceived).waited_seconds
    assert waited is not None
    assert waited >= 2.0


def test_stopping_while_the_broker_is_away_keeps_the_queue(setup: Setup) -> None:
    link, events = setup.lamp(start=False)
    setup.broker.managed.stop()
    link.start()
    queued = link.send_touch("#0a0b0c")
    assert queued.delivery is TouchOutcome.QUEUED

    link.stop()

    assert events.of(Connected) == []
    setup.broker.managed.start()
    relay = setup.relay(setup.topics.every(Kind.TOUCH))
    _, again = setup.lamp()
    again.wait_for(Connected)
    assert decode_touch(setup.topics.touch("lamp-a"), relay.next().payload) == queued.touch


# ---- TLS --------------------------------------------------------------------------------------


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[BrokerFixture, Certificates, int]]:
    certificates = Certificates.make(tmp_path / "certificates")
    port = free_port()
    tls = TlsSettings(
        enabled=True,
        address="127.0.0.1",
        port=port,
        certfile=certificates.certificate,
        keyfile=certificates.key,
    )
    running = BrokerFixture(start_managed_broker(tmp_path / "tls-broker", tls=tls))
    try:
        yield running, certificates, port
    finally:
        running.close()


def tls_lamp(
    tls_broker: tuple[BrokerFixture, Certificates, int], tmp_path: Path, *, host: str
) -> tuple[LampLink, EventLog]:
    broker, certificates, port = tls_broker
    events = EventLog()
    link = LampLink(
        lamp_id="lamp-t",
        password=broker.add_lamp("lamp-t"),
        sink=events,
        state_dir=tmp_path / "lamp-t",
        host=host,
        port=port,
        topic_root=broker.topics.root,
        tls=True,
        ca_file=certificates.ca,
        reconnect_min_seconds=0.05,
        reconnect_max_seconds=0.3,
    )
    link.start()
    return link, events


def test_tls_with_a_private_ca_connects(
    tls_broker: tuple[BrokerFixture, Certificates, int], tmp_path: Path
) -> None:
    link, events = tls_lamp(tls_broker, tmp_path, host="localhost")  # the certificate's name
    try:
        events.wait_for(Connected)
        assert link.send_touch("#010203").delivery is TouchOutcome.SENT
    finally:
        link.stop()


def test_tls_refuses_a_broker_whose_certificate_names_another_host(
    tls_broker: tuple[BrokerFixture, Certificates, int],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    link, events = tls_lamp(tls_broker, tmp_path, host="127.0.0.1")  # not "localhost"
    try:
        wait_until(
            lambda: any("cannot reach the broker" in r.getMessage() for r in caplog.records),
            "a log line about the refused certificate",
        )
    finally:
        link.stop()
    line = next(r.getMessage() for r in caplog.records if "cannot reach" in r.getMessage())
    assert "certificate verify failed" in line
    assert "127.0.0.1" in line
    assert events.of(Connected) == []


def test_an_unreadable_ca_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(LinkError, match=r"cannot load the CA file .*missing\.pem"):
        LampLink(
            lamp_id="lamp-t",
            password="x",
            sink=EventLog(),
            state_dir=tmp_path,
            tls=True,
            ca_file=tmp_path / "missing.pem",
        )


# ---- misuse -----------------------------------------------------------------------------------


def test_a_stopped_link_says_so(tmp_path: Path) -> None:
    link = LampLink(lamp_id="lamp-s", password="x", sink=EventLog(), state_dir=tmp_path)
    link.stop()
    with pytest.raises(LinkError, match="stopped"):
        link.send_touch("#ffffff")
    with pytest.raises(LinkError, match="create a new LampLink"):
        link.start()


def test_settings_without_a_password_name_the_fix(tmp_path: Path) -> None:
    settings = DeviceSettings(lamp_id="lamp-s", state_dir=tmp_path)
    with pytest.raises(LinkError, match="touchlamp device enroll"):
        LampLink.from_settings(settings, sink=EventLog())
