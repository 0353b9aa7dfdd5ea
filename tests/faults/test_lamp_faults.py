"""Scenario 3 and 4: a lamp's connection stalled, black-holed, reset or refused (a fault proxy
between lamp and broker), with touches made both ways meanwhile; the device process killed and
restarted with touches in its outbox; duplicates injected by a raw client.

Rule: each touch reaches each peer's lamp core exactly once, in order per sender.
"""

from __future__ import annotations

import json
import logging
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.faults.disk import fill, small_disk
from tests.faults.lamps import FaultLamp, assert_delivered
from tests.faults.world import FaultWorld
from tests.support.ports import free_listening_port
from tests.support.proxy import FaultProxy
from tests.support.raw_mqtt import RawClient
from tests.support.waiting import WAIT, wait_until
from touchlamp.device.events import TouchDown, TouchUp
from touchlamp.device.looks import Rgb
from touchlamp.device.outbox import OUTBOX_FILE
from touchlamp.protocol import Glow, Touch, encode, touch_id

AMBER, BLUE = "#ff8c1a", "#3c78ff"


def _stall(proxy: FaultProxy) -> Callable[[], None]:
    """Bytes held for a second (less than the keepalive): late, not lost; no reconnect."""
    proxy.pause()
    return proxy.resume


def _blackhole(proxy: FaultProxy) -> Callable[[], None]:
    """Bytes vanish for 6 s, new connections too: only the keepalive (2 s) notices."""
    proxy.blackhole()
    return proxy.restore


def _reset(proxy: FaultProxy) -> Callable[[], None]:
    """RST on the connection, and the broker unreachable (refused) for a while."""
    proxy.refuse()
    proxy.reset()
    return proxy.restore


FAULTS = {"stall": (_stall, 1.0), "blackhole": (_blackhole, 6.0), "reset": (_reset, 3.0)}


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(name, marks=[pytest.mark.slow] if name == "blackhole" else [])
        for name in FAULTS
    ],
)
def test_a_lamp_cut_off_for_a_while_loses_nothing_either_way(world: FaultWorld, fault: str) -> None:
    proxy = world.proxy()
    a = world.lamp(
        "lamp-a", color=AMBER, via=proxy, keepalive_seconds=2, connect_timeout_seconds=2.0
    )
    b = world.lamp("lamp-b", color=BLUE)
    world.pair(a, b)
    apply, seconds = FAULTS[fault]
    with world.relay():
        world.start(a, b)
        a.touch()
        b.touch()
        a.wait_received(1, sender="lamp-b")
        b.wait_received(1, sender="lamp-a")

        end = apply(proxy)
        for _ in range(5):
            a.touch()
            b.touch()  # its glows queue in lamp-a's session
        threading.Event().wait(seconds)  # the length of the outage
        end()

        a.touch()
        b.touch()
        assert_delivered(a, [b])
        assert_delivered(b, [a])
        if fault == "stall":
            assert len(a.inbox.connects) == 1, "a stall shorter than the keepalive reconnected"
        else:
            assert len(a.inbox.connects) >= 2, "the outage was not noticed"


def _outbox_rows(state_dir: Path) -> list[tuple[int, int]]:
    """(stream, seq) of every touch in the lamp's outbox, read-only, from outside the lamp."""
    uri = f"file:{state_dir / OUTBOX_FILE}?mode=ro"
    with sqlite3.connect(uri, uri=True) as db:
        (stream,) = db.execute("SELECT stream FROM counter").fetchone()
        return [(stream, seq) for (seq,) in db.execute("SELECT seq FROM touch ORDER BY seq")]


def _tap(port: int, lamp_id: str) -> None:
    for action in ("press", "release"):
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/lamps/{lamp_id}/{action}", method="POST", data=b""
        )
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310  loopback http
            pass


def test_a_device_killed_with_touches_in_its_outbox_sends_them_after_a_restart(
    world: FaultWorld, tmp_path: Path
) -> None:
    """``touchlamp device run --simulate`` as a real process: two taps reach the peer, the
    network goes, three more taps wait in the outbox, the process is killed (SIGKILL), the
    network comes back and the service restarts. The three arrive once, in order — and the two
    that had arrived (still in the outbox, unconfirmed, so sent again) do not show twice."""
    proxy = world.proxy()
    b = world.lamp("lamp-b", color=BLUE)
    password = world.broker.add_lamp("lamp-a")
    world.store.add_lamp("lamp-a", name="lamp-a", color=AMBER, now_ms=0)
    world.pair("lamp-a", b)
    state = tmp_path / "device-a"
    env_file = tmp_path / "lamp-a.env"
    settings = {
        "LAMP_ID": "lamp-a",
        "COLOR": AMBER,
        "STATE_DIR": str(state),
        "MQTT__HOST": "127.0.0.1",
        "MQTT__PORT": str(proxy.port),
        "MQTT__PASSWORD": password,
        "MQTT__TOPIC_ROOT": world.root,
        "MQTT__RECONNECT_MIN_SECONDS": "0.1",
        "MQTT__RECONNECT_MAX_SECONDS": "1.0",
    }
    env_file.write_text("".join(f"TOUCHLAMP_DEVICE_{k}='{v}'\n" for k, v in settings.items()))
    web_port = free_listening_port()
    log = tmp_path / "device.log"

    def run_device() -> subprocess.Popen[bytes]:
        with log.open("ab") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "touchlamp", "device", "run", "--simulate",
                 "--web-port", str(web_port), "--env-file", str(env_file)],
                stdout=output, stderr=output, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        wait_until(lambda: _page_up(web_port, process, log), "the device's page")
        return process

    with world.relay():
        world.start(b)
        device = run_device()
        try:
            for _ in range(2):
                _tap(web_port, "lamp-a")
            b.wait_received(2, sender="lamp-a")
            delivered = b.received(sender="lamp-a")

            proxy.refuse()
            proxy.reset()
            for _ in range(3):
                _tap(web_port, "lamp-a")
            wait_until(lambda: len(_outbox_rows(state)) == 5, "five touches in the outbox")
            device.send_signal(signal.SIGKILL)
            device.wait(WAIT)
            waiting = [touch_id("lamp-a", stream, seq) for stream, seq in _outbox_rows(state)]
            assert waiting[:2] == delivered  # acknowledged, not yet confirmed: still there

            proxy.restore()
            device = run_device()
            assert_delivered("lamp-a", [b], expected=waiting)
            _tap(web_port, "lamp-a")
            b.wait_received(6, sender="lamp-a")
            got = b.received(sender="lamp-a")
            assert len(got) == len(set(got)) == 6, got
        finally:
            device.send_signal(signal.SIGTERM)
            device.wait(WAIT)


def _page_up(port: int, process: subprocess.Popen[bytes], log: Path) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"the device exited with {process.returncode}:\n{log.read_text()}")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/lamps", timeout=2) as page:
            return bool(json.loads(page.read()))
    except OSError:
        return False


def test_duplicates_injected_by_a_raw_client_show_once(world: FaultWorld) -> None:
    """Lamp A's credentials in a raw client: the same seq twice, then with DUP, an old seq
    after a newer one; then, with the relay's credentials, the same glow straight to lamp B
    twice (plain and DUP). Lamp B's core is given each touch once."""
    b = world.lamp("lamp-b", color=BLUE)
    password = world.broker.add_lamp("lamp-a")
    world.store.add_lamp("lamp-a", name="lamp-a", color=AMBER, now_ms=0)
    world.pair("lamp-a", b)
    topics = world.broker.topics
    stream = 0xC0FFEE

    def touch(seq: int) -> bytes:
        return encode(Touch(seq=seq, stream=stream, color=AMBER, ts=0))

    def glow(seq: int) -> bytes:
        at = round(time.time() * 1000)
        return encode(Glow(touch=touch_id("lamp-a", stream, seq), sender="lamp-a",
                           color=AMBER, mutual=False, at=at))  # fmt: skip

    with world.relay() as relay:
        world.start(b)
        lamp = RawClient.mqtt5(
            port=world.broker.port, username="lamp-a", password=password, client_id="lamp-a"
        )
        for seq, dup in ((1, False), (1, False), (1, True), (2, True), (2, False), (1, False)):
            assert lamp.publish(topics.touch("lamp-a"), touch(seq), dup=dup) == 0
        assert lamp.publish(topics.touch("lamp-a"), touch(3)) == 0
        lamp.close()
        b.wait_received(3, sender="lamp-a")
        wait_until(lambda: relay.metrics.duplicates._value.get() == 4, "four duplicates counted")

        username, password = world.broker.relay_login("impostor")
        impostor = RawClient.mqtt5(
            port=world.broker.port,
            username=username,
            password=password,
            client_id="impostor",
        )
        for seq, dup in ((3, False), (3, True), (4, False), (4, True)):
            assert impostor.publish(topics.glow("lamp-b"), glow(seq), dup=dup) == 0
        impostor.close()
    b.wait_received(4, sender="lamp-a")
    assert b.received(sender="lamp-a") == [touch_id("lamp-a", stream, s) for s in (1, 2, 3, 4)]


def _trouble_frames(lamp: FaultLamp, since: float) -> list[Rgb]:
    """Frames since ``since`` in the state-trouble look's colour (#ffc000: no blue, red above
    green); neither lamp's own colour, a glow or a tap looks like that."""
    return [
        frame.rgb
        for frame in lamp.frames()
        if frame.at >= since and frame.rgb.b == 0 and frame.rgb.r > frame.rgb.g > 0
    ]


def tap(lamp: FaultLamp) -> None:
    """A short tap on the lamp's sensor, through its agent as gpiozero would report it."""
    assert lamp.agent is not None
    lamp.agent.post(TouchDown())
    lamp.agent.post(TouchUp())


@pytest.mark.allow_error_logs
def test_a_full_disk_does_not_stop_the_lamp(
    world: FaultWorld, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Lamp A's state directory is on a small disk that fills up (a full disk; a read-only SD
    card, the usual way a Pi's card dies, refuses writes alike). Before, ``send_touch`` raised
    and the agent's loop died: the lamp went dark for good. Now the lamp carries on: taps go
    out, glows are shown, a yellow "trouble" swell says something is wrong, and the cause is
    logged once with the fix; once the disk has room again, everything is as before."""
    caplog.set_level(logging.WARNING, logger="touchlamp")
    with small_disk(tmp_path / "disk") as disk:
        a = world.lamp("lamp-a", color=AMBER, state_dir=disk / "lamp-a")
        b = world.lamp("lamp-b", color=BLUE)
        world.pair(a, b)
        with world.relay():
            world.start(a, b)
            a.touch()
            b.wait_received(1, sender="lamp-a")
            filler = fill(disk)
            full_at = time.monotonic()

            for count in (2, 3):
                tap(a)
                b.wait_received(count, sender="lamp-a")  # out all the same
            # (Before a glow: a glow outshines any status look while it lasts.)
            wait_until(lambda: _trouble_frames(a, full_at), "lamp-a's trouble look")
            b.touch()
            a.wait_received(1, sender="lamp-b")  # shown all the same
            assert a.agent is not None
            assert a.agent.online  # the loop still runs: it handled the events
            said = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
            assert len(said) == 1, said  # once, naming the file and the fix
            assert "check free space and permissions of the state directory" in said[0]

            filler.unlink()
            tap(a)
            b.wait_received(4, sender="lamp-a")
            b.touch()  # the seen-glow file is tried again too
            a.wait_received(2, sender="lamp-b")
            wait_until(
                lambda: "takes writes again" in caplog.text, "lamp-a to say the disk is back"
            )
            # The core was told: the trouble look has ended (a glow outshines it just now).
            assert [trouble.error is None for trouble in a.inbox.troubles] == [False, True]
        got = b.received(sender="lamp-a")
        assert len(got) == len(set(got)) == 4, got
