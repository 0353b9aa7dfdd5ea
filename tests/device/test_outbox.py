"""The outbox on its own: real SQLite in a temporary state dir, a hand-moved clock."""

from __future__ import annotations

import logging
import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.device.link_support import ids_in_seen_file
from tests.faults.disk import fill, small_disk
from tests.support.clock import FakeClock
from touchlamp.device.dedup import SeenTouches
from touchlamp.device.outbox import OUTBOX_FILE, Outbox, StateFileError
from touchlamp.mqtt.backoff import Backoff

HOUR = 3600.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


_opened: list[Outbox] = []


@pytest.fixture(autouse=True)
def _close_outboxes() -> Iterator[None]:
    yield
    while _opened:
        _opened.pop().close()


def open_outbox(state_dir: Path, clock: FakeClock, **limits: float) -> Outbox:
    outbox = Outbox(
        state_dir=state_dir,
        max_entries=int(limits.get("max_entries", 1000)),
        max_age_seconds=limits.get("max_age_seconds", 12 * HOUR),
        now=clock,
    )
    _opened.append(outbox)
    return outbox


def test_touches_get_increasing_seqs_and_leave_in_order(tmp_path: Path, clock: FakeClock) -> None:
    outbox = open_outbox(tmp_path, clock)
    made = [
        outbox.add(color=color, ts_ms=1000 + i)
        for i, color in enumerate(["#FF0000", "#00ff00", "#0000ff"])
    ]

    assert [touch.seq for touch in made] == [0, 1, 2]
    assert made[0].color == "#ff0000"  # stored as the wire wants it
    assert {touch.stream for touch in made} == {outbox.stream}
    assert outbox.pending() == made
    assert outbox.pending(after_seq=0) == made[1:]
    assert outbox.pending(limit=1) == made[:1]

    assert outbox.remove(1)
    assert not outbox.remove(1)
    assert [touch.seq for touch in outbox.pending()] == [0, 2]


def test_seq_stream_and_queue_survive_a_restart(tmp_path: Path, clock: FakeClock) -> None:
    first = open_outbox(tmp_path, clock)
    queued = first.add(color="#112233", ts_ms=5)
    first.add(color="#112233", ts_ms=6)
    first.remove(1)
    stream = first.stream
    first.close()

    again = open_outbox(tmp_path, clock)
    assert again.stream == stream
    assert again.pending() == [queued]
    # A removed touch's seq is never handed out again: the relay would take it for a repeat.
    assert again.add(color="#112233", ts_ms=7).seq == 2


def test_a_reserved_touch_is_queued_before_it_is_written(tmp_path: Path, clock: FakeClock) -> None:
    """The link publishes between ``reserve`` and ``persist``: the touch is queued all along."""
    outbox = open_outbox(tmp_path, clock)
    touch = outbox.reserve(color="#FF0000", ts_ms=1)

    assert outbox.pending() == [touch]
    assert outbox.stats().queued == 1
    assert _stored_seqs(tmp_path) == []  # not on disk yet

    outbox.persist(touch.seq)
    assert outbox.pending() == [touch]
    assert _stored_seqs(tmp_path) == [0]
    with pytest.raises(ValueError, match="seq 0 is not waiting"):
        outbox.persist(touch.seq)


def test_a_puback_before_the_commit_keeps_the_touch_until_it_is_confirmed(
    tmp_path: Path, clock: FakeClock
) -> None:
    outbox = open_outbox(tmp_path, clock)
    touch = outbox.reserve(color="#00ff00", ts_ms=1)
    outbox.acknowledge(touch.seq)  # the PUBACK, on the link's thread
    outbox.persist(touch.seq)

    stats = outbox.stats()
    assert (stats.queued, stats.unconfirmed) == (0, 1)
    assert _stored_seqs(tmp_path) == [0]  # still kept for a broker that dies unsaved
    assert outbox.remove(touch.seq)  # confirmed
    assert outbox.pending() == []
    assert _stored_seqs(tmp_path) == []


def test_a_touch_confirmed_before_its_commit_is_never_written(
    tmp_path: Path, clock: FakeClock
) -> None:
    outbox = open_outbox(tmp_path, clock)
    first, second = (outbox.reserve(color="#0000ff", ts_ms=ts) for ts in (1, 2))
    outbox.acknowledge(first.seq)
    assert outbox.remove(first.seq)  # confirm_seconds=0, or a refusal: gone at the PUBACK
    assert not outbox.remove(first.seq)
    outbox.acknowledge(first.seq)  # a late repeat of its PUBACK does not bring it back

    assert outbox.pending() == [second]
    outbox.persist(second.seq)  # they need not be written in order
    outbox.persist(first.seq)

    assert outbox.pending() == [second]
    stats = outbox.stats()
    assert (stats.queued, stats.unconfirmed, stats.next_seq) == (1, 0, 2)
    assert _stored_seqs(tmp_path) == [1]


def test_a_crash_before_the_commit_loses_that_touch_but_never_reuses_its_seq(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Published, then the power went before ``persist``: after the restart the touch is not
    sent again (it relies on the broker), and no new touch gets its seq — the relay would drop
    it as a repeat."""
    before = open_outbox(tmp_path, clock)
    kept = before.add(color="#000001", ts_ms=1)
    published = [before.reserve(color="#000002", ts_ms=ts) for ts in range(100)]  # > a block
    stream = before.stream
    # The crash: the process is gone, nothing more is written; ``before`` is left as it is.

    after = open_outbox(tmp_path, clock)
    assert after.stream == stream
    assert after.pending() == [kept]
    new = after.add(color="#000003", ts_ms=2)
    assert new.seq > max(touch.seq for touch in published)


def test_seqs_stay_unique_however_reserve_persist_and_crashes_interleave(
    tmp_path: Path, clock: FakeClock
) -> None:
    rng = random.Random(7)
    outbox = open_outbox(tmp_path, clock)
    handed_out: list[int] = []
    waiting: list[int] = []
    for _ in range(400):
        step = rng.random()
        if step < 0.6:
            waiting.append(outbox.reserve(color="#123456", ts_ms=0).seq)
            handed_out.append(waiting[-1])
        elif step < 0.95 and waiting:
            outbox.persist(waiting.pop(rng.randrange(len(waiting))))
        elif step < 0.98:
            outbox = open_outbox(tmp_path, clock)  # a crash: the old one is abandoned
            waiting = []
        else:
            outbox.close()  # a clean stop
            outbox = open_outbox(tmp_path, clock)
            waiting = []

    assert len(handed_out) == len(set(handed_out))
    assert handed_out == sorted(handed_out)


def test_a_fresh_state_dir_is_a_new_stream(tmp_path: Path, clock: FakeClock) -> None:
    streams = {open_outbox(tmp_path / str(i), clock).stream for i in range(3)}
    # Three random 32-bit numbers; a collision would be a one-in-a-billion event.
    assert len(streams) == 3
    assert all(0 <= stream < 2**32 for stream in streams)


def test_full_outbox_drops_the_oldest_counted_and_logged(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    outbox = open_outbox(tmp_path, clock, max_entries=3)
    for ts in range(5):
        outbox.add(color="#abcdef", ts_ms=ts)

    assert [touch.seq for touch in outbox.pending()] == [2, 3, 4]
    stats = outbox.stats()
    assert (stats.queued, stats.dropped, stats.expired, stats.next_seq) == (3, 2, 0, 5)
    dropped_lines = [r for r in caplog.records if "outbox full" in r.getMessage()]
    assert len(dropped_lines) == 2
    assert all(r.levelno == logging.WARNING for r in dropped_lines)
    assert "seq 0" in dropped_lines[0].getMessage()


def test_old_touches_expire_counted_and_logged(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    outbox = open_outbox(tmp_path, clock, max_age_seconds=2 * HOUR)
    outbox.add(color="#000001", ts_ms=1)
    clock.now += 1.5 * HOUR
    recent = outbox.add(color="#000002", ts_ms=2)

    assert outbox.expire() == 0
    clock.now += 0.6 * HOUR  # the first is now 2.1 h old, the second 0.6 h
    assert outbox.expire() == 1

    assert outbox.pending() == [recent]
    assert outbox.stats().expired == 1
    assert any("expired unsent (seq 0)" in r.getMessage() for r in caplog.records)


def test_counts_survive_a_restart(tmp_path: Path, clock: FakeClock) -> None:
    outbox = open_outbox(tmp_path, clock, max_entries=1, max_age_seconds=HOUR)
    outbox.add(color="#000001", ts_ms=1)
    outbox.add(color="#000002", ts_ms=2)
    clock.now += 2 * HOUR
    outbox.expire()
    outbox.close()

    stats = open_outbox(tmp_path, clock).stats()
    assert (stats.queued, stats.dropped, stats.expired) == (0, 1, 1)


def test_an_unreadable_outbox_names_the_file_and_the_fix(tmp_path: Path, clock: FakeClock) -> None:
    (tmp_path / OUTBOX_FILE).write_bytes(b"this is not an SQLite database, it only says so" * 100)
    with pytest.raises(StateFileError, match="move it aside") as raised:
        open_outbox(tmp_path, clock)
    assert str(tmp_path / OUTBOX_FILE) in str(raised.value)


def test_bad_limits_are_refused(tmp_path: Path, clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="max_entries"):
        open_outbox(tmp_path, clock, max_entries=0)
    with pytest.raises(ValueError, match="max_age_seconds"):
        open_outbox(tmp_path, clock, max_age_seconds=0)


def _stored_seqs(state_dir: Path) -> list[int]:
    """The seqs on disk, read through a connection of its own (what a restart would find)."""
    with sqlite3.connect(state_dir / OUTBOX_FILE) as db:
        return [seq for (seq,) in db.execute("SELECT seq FROM touch ORDER BY seq")]


def test_seen_touches_are_bounded_and_persisted(tmp_path: Path) -> None:
    seen = SeenTouches(state_dir=tmp_path, capacity=3)
    assert not seen.known("lamp-a:1:1")
    seen.remember(["lamp-a:1:1"])
    assert seen.known("lamp-a:1:1")
    seen.remember(["lamp-a:1:1"])  # remembered twice: still once
    seen.remember([f"lamp-a:1:{seq}" for seq in (2, 3, 4)])
    seen.close()

    after_reboot = SeenTouches(state_dir=tmp_path, capacity=3)
    assert after_reboot.known("lamp-a:1:4")  # still remembered
    assert not after_reboot.known("lamp-a:1:1")  # the oldest was forgotten to stay bounded
    after_reboot.close()


def test_seen_touches_reach_the_database_file_at_the_checkpoint_not_before(
    tmp_path: Path,
) -> None:
    """SQLite's own checkpoint would run inside ``remember``, on the glows' way."""
    seen = SeenTouches(state_dir=tmp_path, capacity=5000)
    for seq in range(2000):  # well past SQLite's automatic checkpoint (1000 pages)
        seen.remember([f"lamp-a:1:{seq}"])

    assert ids_in_seen_file(tmp_path) == []
    seen.checkpoint()
    assert len(ids_in_seen_file(tmp_path)) == 2000
    assert seen.known("lamp-a:1:0")
    seen.close()


def test_backoff_grows_with_jitter_and_resets() -> None:
    backoff = Backoff(minimum=1.0, maximum=8.0, rng=random.Random(4))
    delays = [backoff.next_delay() for _ in range(12)]

    ceilings = [2.0, 4.0] + [8.0] * 10
    assert all(1.0 <= delay <= ceiling for delay, ceiling in zip(delays, ceilings, strict=True))
    assert len({round(delay, 6) for delay in delays[2:]}) > 1  # jittered, not a fixed 8 s

    backoff.reset()
    assert 1.0 <= backoff.next_delay() <= 2.0  # back to the first ceiling
    # Even the first retry is jittered: lamps dropped together must not return together.
    firsts = [Backoff(minimum=1.0, maximum=8.0, rng=random.Random(n)).next_delay() for n in (1, 2)]
    assert len({round(delay, 6) for delay in firsts}) > 1


def test_backoff_refuses_inverted_bounds() -> None:
    with pytest.raises(ValueError, match="minimum <= maximum"):
        Backoff(minimum=5.0, maximum=1.0, rng=random.Random())


def test_a_full_disk_keeps_touches_in_memory_and_never_reuses_a_seq_after_a_restart(
    tmp_path: Path, clock: FakeClock
) -> None:
    """The disk fills up (a real tmpfs, to ENOSPC): ``persist`` says so, but the touch stays
    queued in memory; once the seqs reserved on disk run out the outbox counts on far past
    them, so the next start, counting on from the disk, hands out none of them again (the
    relay would drop a new touch under a used seq as a repeat)."""
    with small_disk(tmp_path / "disk") as disk:
        outbox = open_outbox(disk / "lamp", clock)
        first = outbox.add(color="#000001", ts_ms=1)
        filler = fill(disk)
        made: list[int] = []
        for n in range(70):  # more than the block of seqs reserved on disk
            touch = outbox.reserve(color="#000002", ts_ms=n)
            with pytest.raises(StateFileError, match="check free space"):
                outbox.persist(touch.seq)
            made.append(touch.seq)
        assert [touch.seq for touch in outbox.pending(limit=1000)] == [first.seq, *made]
        assert outbox.stats().queued == 71
        assert made[-1] >= 2**20  # counted on far past the disk's reservation
        assert outbox.remove(made[0])  # acknowledged and confirmed: gone from memory
        assert outbox.stats().queued == 70

        filler.unlink()
        outbox.close()  # a restart: what was only in memory is gone
        again = open_outbox(disk / "lamp", clock)
        fresh = [again.add(color="#000003", ts_ms=n).seq for n in range(100)]
        assert not set(fresh) & {first.seq, *made}
        again.close()
