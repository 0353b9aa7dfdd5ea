"""Which glows this lamp has already shown, so a redelivered one is not shown twice.

QoS 1 means "at least once": the broker redelivers a glow whose PUBACK it did not see (a dropped
connection, a reboot between showing the glow and acknowledging it), and a relay that restarts
mid-forward may send one again. Glows carry the id of the touch they show; this is a bounded set
of the most recent ids, kept on disk in the state directory so that a reboot does not replay
the last glow. ``synchronous=NORMAL``: losing the newest entry to a power cut costs at most one
repeated glow, and spares the SD card an fsync per glow.

An id is written once its glow was shown (the link's ``kept``, device/incoming.py), so a lamp
that dies in between gets the glow again and shows it, rather than having dropped it as seen
before it ever lit up (RELIABILITY.md, change 16); before showing, the link only *reads* whether
an id is known. Left to itself, SQLite copies its write-ahead log into the database file every
few hundred writes, inside the write that fills it, with two fsyncs, so about one glow in a
hundred would wait for them. So automatic checkpoints are off and the link calls ``checkpoint``
when glows pause (see device/incoming.py). What that saves, measured against the automatic
checkpoint in the same run: ``python -m bench.seen_writes`` (BENCHMARKS.md §1).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from touchlamp.device.outbox import StateFileError

__all__ = ["SEEN_FILE", "SeenTouches"]

SEEN_FILE = "seen-glows.sqlite3"


class SeenTouches:
    """A bounded, persistent set of touch ids; thread-safe."""

    def __init__(self, *, state_dir: Path, capacity: int = 1000) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self._capacity = capacity
        self._lock = threading.Lock()
        self._unchecked = 0  # ids written since the last checkpoint
        self.path = state_dir / SEEN_FILE
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA busy_timeout = 5000")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.execute("PRAGMA wal_autocheckpoint = 0")  # see the module docstring
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS seen ("
                " n INTEGER PRIMARY KEY AUTOINCREMENT, touch TEXT NOT NULL UNIQUE)"
            )
        except sqlite3.DatabaseError as error:
            raise StateFileError(
                f"cannot open {self.path} ({error}); delete it to start afresh (the last "
                "glows may then show once more)"
            ) from error

    def known(self, touch_id: str) -> bool:
        """Whether ``touch_id`` is remembered (its glow was shown before)."""
        with self._lock:
            try:
                row = self._db.execute("SELECT 1 FROM seen WHERE touch = ?", (touch_id,)).fetchone()
            except sqlite3.Error as error:
                raise StateFileError(
                    f"cannot read {self.path} ({error}); delete it to start afresh (the last "
                    "glows may then show once more)"
                ) from error
        return row is not None

    def remember(self, touch_ids: Sequence[str]) -> None:
        """Remember ``touch_ids`` (one transaction), forgetting the oldest beyond capacity."""
        if not touch_ids:
            return
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                added = 0
                for touch_id in touch_ids:
                    added += self._db.execute(
                        "INSERT OR IGNORE INTO seen (touch) VALUES (?)", (touch_id,)
                    ).rowcount
                if added:
                    self._db.execute(
                        "DELETE FROM seen WHERE n <= (SELECT max(n) FROM seen) - ?",
                        (self._capacity,),
                    )
                self._db.execute("COMMIT")
            except sqlite3.Error as error:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise StateFileError(
                    f"cannot write {self.path} ({error}); check free space and permissions of "
                    "the state directory"
                ) from error
            self._unchecked += added

    @property
    def unchecked(self) -> int:
        """Ids written since the last ``checkpoint``."""
        return self._unchecked

    def checkpoint(self) -> None:
        """Copy the ids written since the last call into the database file (fsyncs it), off
        the way of any glow; nothing to do if none were written. Without it the write-ahead log
        keeps growing until ``close``."""
        with self._lock:
            if not self._unchecked:
                return
            try:
                self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error as error:
                raise StateFileError(
                    f"cannot write {self.path} ({error}); check free space and permissions of "
                    "the state directory"
                ) from error
            self._unchecked = 0

    def close(self) -> None:
        with self._lock:
            self._db.close()
