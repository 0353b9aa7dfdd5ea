"""The lamp's outbox: touches on disk until the broker has acknowledged them.

A touch is queued in two steps. ``reserve`` gives it its ``seq`` in memory, at once; the link
publishes it, and ``persist`` then writes it to disk. The store is SQLite in the lamp's state
directory (WAL, and ``synchronous=FULL``: on a lamp, pulling the plug is the usual way to switch
it off), and on a Raspberry Pi's SD card that commit's fsync takes 5-30 ms — so it comes after
the publish, not in front of it (see BENCHMARKS.md, touch → light). What that costs: a crash
between ``reserve`` and ``persist`` loses a touch that was not yet published (one made a
millisecond earlier), and one that was is not sent again after the restart, so it relies on the
broker alone. A touch made while offline is persisted at once, as before.

Seqs are handed out of a block reserved on disk ahead of use (``counter.next_seq`` is the first
seq not reserved; ``persist`` extends the block, so the commit stays behind the publish): a touch
published and then lost to a crash before ``persist`` still used up its seq, and the next start
never hands it out again — the relay would take a new touch with that seq for a repeat and drop
it. After a crash the seqs left in the block are skipped (the relay does not mind gaps); a clean
``close`` gives them back. ``counter.stream`` is a random 32-bit number chosen when the counter
is created, so a fresh state directory — a factory reset — starts a new stream and the relay does
not mistake the new seq 0 for a repeat.

Bounds, both counted and logged, never silent:

- at most ``max_entries`` queued touches: queuing one more drops the oldest ("dropped");
- a touch older than ``max_age_seconds`` is no longer worth showing: ``expire()`` removes it
  ("expired"). Age is judged by the injected wall clock (``now``), because it must survive a
  reboot; a Raspberry Pi without a real-time clock that learns the date from NTP after queueing
  may therefore expire those touches early — they were made while its clock was wrong.

Entries leave in ``seq`` order and only through ``remove`` or the bounds. The link does not
remove a touch at the broker's PUBACK but only once the connection has outlived it (see
device/touch_delivery.py, "confirmed"): until then the touch is ``acknowledge``d — counted as
``unconfirmed``, not ``queued`` — and it stays on disk, so a broker that dies before writing it
gets it again. Acknowledgements live in memory: after a restart every entry is sent again (the
relay drops repeats). An acknowledged touch the bounds push out was delivered: it is not counted
as dropped or expired.

Every operation takes a touch that is reserved but not yet persisted as queued: ``pending`` lists
it, and a PUBACK can ``acknowledge`` or ``remove`` it before its commit (on loopback it usually
does). A touch removed before ``persist`` is never written.
Thread-safe: one connection behind a lock, every operation one short transaction.
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from touchlamp.errors import TouchlampError
from touchlamp.protocol.messages import Touch

__all__ = ["OUTBOX_FILE", "Outbox", "OutboxStats", "StateFileError"]

logger = logging.getLogger(__name__)

OUTBOX_FILE = "outbox.sqlite3"
"""The outbox's file name inside the lamp's state directory."""

_SEQ_BLOCK = 64
"""Seqs reserved on disk at a time; ``persist`` reserves the next block when half is used."""

_UNWRITABLE_JUMP = 2**20
"""How far ahead of the seqs reserved on disk the outbox counts while the disk refuses to
reserve more: a restart counts on from what the disk holds, and reaches these only after a
million touches (the relay forgets recorded touches within a day)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS counter (
    only_row INTEGER PRIMARY KEY CHECK (only_row = 1),
    stream INTEGER NOT NULL,
    next_seq INTEGER NOT NULL,
    dropped INTEGER NOT NULL DEFAULT 0,
    expired INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS touch (
    seq INTEGER PRIMARY KEY,
    color TEXT NOT NULL,
    ts_ms INTEGER NOT NULL,
    queued_at REAL NOT NULL
);
"""


class StateFileError(TouchlampError, OSError):
    """A file of the link in the state directory (outbox, seen glows) cannot be opened or
    written; the message names the file and the fix."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxStats:
    """What the outbox holds now, and what it had to give up since the state dir was created."""

    queued: int
    dropped: int
    expired: int
    stream: int
    next_seq: int
    # Acknowledged by the broker but kept until the connection has outlived the PUBACK.
    unconfirmed: int = 0


@dataclass(slots=True)
class _Unsaved:
    """A touch ``reserve``d and not yet ``persist``ed."""

    touch: Touch
    queued_at: float
    removed: bool = False  # confirmed (or refused) before its commit: it is never written
    in_memory: bool = False  # the disk refused it: kept here until it leaves, lost at a restart


class Outbox:
    """Touches waiting for the broker's acknowledgement, on disk. See the module docstring."""

    def __init__(
        self,
        *,
        state_dir: Path,
        max_entries: int = 1000,
        max_age_seconds: float = 12 * 3600.0,
        now: Callable[[], float],
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        if max_age_seconds <= 0:
            raise ValueError(f"max_age_seconds must be above 0, got {max_age_seconds}")
        self._max_entries = max_entries
        self._max_age = max_age_seconds
        self._now = now
        self._lock = threading.Lock()
        self._acknowledged: set[int] = set()
        self._unsaved: dict[int, _Unsaved] = {}
        self._dropped_in_memory = 0  # by the bound, while the disk refused them (not on disk)
        self._closed = False
        self.path = state_dir / OUTBOX_FILE
        try:
            state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Autocommit mode; every write below opens its own short IMMEDIATE transaction.
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as error:
            raise StateFileError(
                f"cannot open the outbox {self.path}: {error}; check that the state directory "
                "exists and belongs to the user running the lamp"
            ) from error
        try:
            self._db.execute("PRAGMA busy_timeout = 5000")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.executescript(_SCHEMA)
            with self._transaction():
                row = self._db.execute("SELECT stream, next_seq FROM counter").fetchone()
                if row is None:
                    row = (secrets.randbits(32), 0)
                    self._db.execute(
                        "INSERT INTO counter (only_row, stream, next_seq) VALUES (1, ?, ?)", row
                    )
                self._stream: int = row[0]
                self._next_seq: int = row[1]
                # The highest seq ever written to the touch table: ``pending`` after it need
                # not ask the disk (the newest touch, on its way out, is still in memory).
                self._written_up_to: int = self._db.execute(
                    "SELECT coalesce(max(seq), -1) FROM touch"
                ).fetchone()[0]
                self._reserved = self._next_seq + _SEQ_BLOCK
                self._db.execute("UPDATE counter SET next_seq = ?", (self._reserved,))
        except sqlite3.DatabaseError as error:
            self._db.close()
            raise StateFileError(
                f"the outbox {self.path} is unreadable ({error}); move it aside to start afresh "
                "(queued touches in it are lost and the lamp starts a new stream)"
            ) from error

    @property
    def stream(self) -> int:
        """This state directory's random stream number (``Touch.stream``)."""
        return self._stream

    def add(self, *, color: str, ts_ms: int) -> Touch:
        """Queue a touch in ``color`` made at ``ts_ms`` and write it to disk at once
        (``reserve``, then ``persist``); returns it with its new ``seq``."""
        touch = self.reserve(color=color, ts_ms=ts_ms)
        self.persist(touch.seq)
        return touch

    def reserve(self, *, color: str, ts_ms: int) -> Touch:
        """Queue a touch in ``color`` made at ``ts_ms``, in memory; returns it with its ``seq``.

        Call ``persist(seq)`` next, once, whatever became of it. This writes to disk only when
        touches come faster than ``persist`` reserves seqs ahead; ``StateFileError`` if that
        write fails (the touch is then lost, loudly), ``pydantic.ValidationError`` for a colour
        that is not ``#rrggbb``.
        """
        with self._lock:
            if self._next_seq >= self._reserved and not self._reserve_more(self._next_seq):
                # The disk refuses (full, read-only): count on far past what it holds, so
                # that a restart, counting on from there, does not hand these seqs out again.
                self._next_seq = max(self._next_seq, self._reserved + _UNWRITABLE_JUMP)
                logger.warning(
                    "outbox %s cannot reserve more touch numbers on disk; counting on from %d "
                    "in memory",
                    self.path,
                    self._next_seq,
                )
                self._reserved = self._next_seq + _SEQ_BLOCK  # tried again at the next persist
            touch = Touch(seq=self._next_seq, stream=self._stream, color=color, ts=ts_ms)
            self._next_seq += 1
            self._unsaved[touch.seq] = _Unsaved(touch=touch, queued_at=self._now())
        return touch

    def _reserve_more(self, seq: int) -> bool:
        """Reserve the seqs from ``seq`` on disk (called locked); False if the disk refused."""
        reserved = seq + _SEQ_BLOCK
        try:
            with self._transaction():
                self._db.execute("UPDATE counter SET next_seq = ?", (reserved,))
        except StateFileError:
            return False
        self._reserved = reserved
        return True

    def persist(self, seq: int) -> None:
        """Write the reserved touch ``seq`` to disk, unless it was removed meanwhile.

        Expired touches go first (counted as expired); if the outbox is then over
        ``max_entries``, the oldest queued touches are dropped (counted as dropped). Both are
        logged. ``StateFileError`` when the disk refuses (full, read-only): the touch is then
        kept in memory only — sent like any queued touch, but lost if the lamp restarts first.
        """
        with self._lock:
            entry = self._unsaved.get(seq)
            if entry is None:
                raise ValueError(f"touch seq {seq} is not waiting to be written to {self.path}")
            reserved = self._reserved
            if reserved - self._next_seq < _SEQ_BLOCK // 2:
                reserved = self._next_seq + _SEQ_BLOCK
            dropped: list[tuple[int]] = []
            written_up_to = self._written_up_to
            try:
                with self._transaction():
                    expired = self._expire_rows()
                    if not entry.removed:
                        self._db.execute(
                            "INSERT INTO touch (seq, color, ts_ms, queued_at) VALUES (?, ?, ?, ?)",
                            (seq, entry.touch.color, entry.touch.ts, entry.queued_at),
                        )
                        written_up_to = max(self._written_up_to, seq)
                        dropped = self._unacknowledged(
                            self._db.execute(
                                "DELETE FROM touch WHERE seq <= ? RETURNING seq",
                                (seq - self._max_entries,),
                            ).fetchall()
                        )
                    if dropped or reserved != self._reserved:
                        self._db.execute(
                            "UPDATE counter SET next_seq = ?, dropped = dropped + ?",
                            (reserved, len(dropped)),
                        )
            except StateFileError:
                if entry.removed:
                    del self._unsaved[seq]
                else:
                    entry.in_memory = True
                    self._bound_in_memory()
                raise
            del self._unsaved[seq]
            self._reserved = reserved
            self._written_up_to = written_up_to
        self._log_expired(expired)
        if dropped:
            logger.warning(
                "outbox full (%d touches): dropped the oldest queued touch(es) seq %s",
                self._max_entries,
                ", ".join(str(row[0]) for row in sorted(dropped)),
            )

    def _bound_in_memory(self) -> None:
        """Touches the disk refused are bounded like the rest (called locked): the oldest
        beyond ``max_entries`` is dropped, counted."""
        kept = sorted(seq for seq, entry in self._unsaved.items() if entry.in_memory)
        for seq in kept[: max(0, len(kept) - self._max_entries)]:
            del self._unsaved[seq]
            if seq not in self._acknowledged:
                self._dropped_in_memory += 1
                logger.warning(
                    "outbox full (%d touches in memory, the disk refusing): dropped touch seq %d",
                    self._max_entries,
                    seq,
                )
            self._acknowledged.discard(seq)

    def expire(self) -> int:
        """Remove touches older than ``max_age_seconds``; returns how many (also logged)."""
        with self._lock, self._transaction():
            expired = self._expire_rows()
        self._log_expired(expired)
        return len(expired)

    def _expire_rows(self) -> list[tuple[int]]:
        """Delete the touches too old to show (called locked, in a transaction); returns those
        the broker had not acknowledged, counted as expired."""
        expired = self._unacknowledged(
            self._db.execute(
                "DELETE FROM touch WHERE queued_at < ? RETURNING seq",
                (self._now() - self._max_age,),
            ).fetchall()
        )
        if expired:
            self._db.execute("UPDATE counter SET expired = expired + ?", (len(expired),))
        return expired

    def _log_expired(self, expired: list[tuple[int]]) -> None:
        if expired:
            logger.warning(
                "outbox: %d queued touch(es) older than %.1f hours expired unsent (seq %s)",
                len(expired),
                self._max_age / 3600,
                ", ".join(str(row[0]) for row in sorted(expired)),
            )

    def pending(self, *, after_seq: int = -1, limit: int = 100) -> list[Touch]:
        """Queued touches with ``seq`` above ``after_seq``, oldest first, at most ``limit``."""
        with self._lock:
            rows = []
            if after_seq < self._written_up_to:
                rows = self._db.execute(
                    "SELECT seq, color, ts_ms FROM touch WHERE seq > ? ORDER BY seq LIMIT ?",
                    (after_seq, limit),
                ).fetchall()
            unsaved = [e.touch for e in self._unsaved.values() if not e.removed]
        touches = [
            Touch(seq=seq, stream=self._stream, color=color, ts=ts) for seq, color, ts in rows
        ]
        touches += [touch for touch in unsaved if touch.seq > after_seq]
        touches.sort(key=lambda touch: touch.seq)
        return touches[:limit]

    def remove(self, seq: int) -> bool:
        """Forget the touch ``seq`` (delivered, or refused for good); False if it was not queued."""
        with self._lock:
            self._acknowledged.discard(seq)
            entry = self._unsaved.get(seq)
            if entry is not None:  # its PUBACK came before its commit, or the disk refused it
                was_queued, entry.removed = not entry.removed, True
                if entry.in_memory:
                    del self._unsaved[seq]
                return was_queued
            with self._transaction():
                return self._db.execute("DELETE FROM touch WHERE seq = ?", (seq,)).rowcount > 0

    def acknowledge(self, seq: int) -> None:
        """The broker acknowledged ``seq``; it stays here, ``unconfirmed``, until ``remove``."""
        with self._lock:
            entry = self._unsaved.get(seq)
            if entry is None:
                row = self._db.execute("SELECT 1 FROM touch WHERE seq = ?", (seq,)).fetchone()
                queued = row is not None
            else:
                queued = not entry.removed  # its PUBACK came before its commit
            if queued:
                self._acknowledged.add(seq)

    def forget_acknowledgements(self) -> None:
        """The connection that acknowledged them ended too soon: they count as queued again."""
        with self._lock:
            self._acknowledged.clear()

    def _unacknowledged(self, rows: list[tuple[int]]) -> list[tuple[int]]:
        """Of the rows just deleted, those the broker had not acknowledged (called locked)."""
        left = [row for row in rows if row[0] not in self._acknowledged]
        self._acknowledged.difference_update(row[0] for row in rows)
        return left

    def stats(self) -> OutboxStats:
        with self._lock:
            stored = self._db.execute("SELECT count(*) FROM touch").fetchone()[0]
            dropped, expired = self._db.execute("SELECT dropped, expired FROM counter").fetchone()
            unsaved = sum(1 for entry in self._unsaved.values() if not entry.removed)
            unconfirmed = len(self._acknowledged)
            next_seq = self._next_seq
        return OutboxStats(
            queued=stored + unsaved - unconfirmed,
            unconfirmed=unconfirmed,
            dropped=dropped + self._dropped_in_memory,
            expired=expired,
            stream=self._stream,
            next_seq=next_seq,
        )

    def close(self) -> None:
        """Give back the reserved seqs not handed out (the next start goes on from the last
        one), and close the file. A second call does nothing."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            lost = sum(
                1
                for seq, entry in self._unsaved.items()
                if entry.in_memory and not entry.removed and seq not in self._acknowledged
            )
            if lost:
                logger.warning(
                    "outbox %s: %d touch(es) the disk refused were not sent yet; they are lost",
                    self.path,
                    lost,
                )
            try:
                with self._transaction():
                    # Only if no other Outbox on this file has reserved seqs since.
                    self._db.execute(
                        "UPDATE counter SET next_seq = ? WHERE next_seq = ?",
                        (self._next_seq, self._reserved),
                    )
            except (StateFileError, sqlite3.Error) as error:
                logger.warning(
                    "outbox %s: could not give back the unused seqs (%s); the next start skips "
                    "them, which the relay does not mind",
                    self.path,
                    error,
                )
            finally:
                self._db.close()

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db, self.path)


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on error); disk errors as StateFileError."""

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self._db = db
        self._path = path

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, _: object
    ) -> None:
        if kind is None:
            try:
                self._db.execute("COMMIT")
            except sqlite3.OperationalError as failure:
                error = failure
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")
        if isinstance(error, sqlite3.OperationalError):
            raise StateFileError(
                f"cannot write the outbox {self._path}: {error}; check free space and "
                "permissions of the state directory"
            ) from error
