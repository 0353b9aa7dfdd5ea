"""The SQLite store: one file, the default for a household or a few thousand lamps.

Settings and why:
- WAL: readers do not block the writer, and a commit is one append to the log.
- ``synchronous=NORMAL``: in WAL mode a committed transaction survives the relay process being
  killed (the log is in the OS's hands at commit); only a power cut or kernel crash may lose the
  last commits — the database stays consistent. ``FULL`` adds an fsync per commit, i.e. per
  touch, to survive that too; the rest of the chain does not (Mosquitto saves its state
  periodically), so the store would pay on every touch for a guarantee nobody else gives.
- foreign keys on (SQLite's default is off), and a busy timeout so that a second process (the
  CLI next to the running relay) waits for the write lock instead of failing at once.
- writes start with ``BEGIN IMMEDIATE``: the write lock is taken up front, so a transaction never
  fails half-way on a lock it could not upgrade.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from touchlamp.server.store.base import StoreError, StoreUnavailableError
from touchlamp.server.store.sql import (
    DuplicateRowError,
    MissingReferenceError,
    Param,
    Rows,
    SqlStore,
)

__all__ = ["SqliteStore"]

_log = logging.getLogger(__name__)

# RETURNING (take_code, set_profile) arrived in SQLite 3.35.
_MIN_SQLITE = (3, 35, 0)
_DUPLICATE = frozenset({"SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"})


class SqliteStore(SqlStore):
    """The store in a SQLite file (``":memory:"`` for a throwaway one).

    One connection, used by one thread at a time (it is opened with ``check_same_thread=False``
    so that the thread that opens it need not be the one that uses it). Several processes may
    open the same file; their writes take turns.
    """

    dialect = "sqlite"
    _LOCK_LAMP_SQL = "SELECT group_id FROM lamps WHERE id = ?"
    _LOCK_GROUP_SQL = "SELECT id FROM lamp_groups WHERE id = ?"

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_s: float = 10.0) -> None:
        self._path = os.fspath(path)
        super().__init__(where=f"the SQLite store {self._path}")
        if sqlite3.sqlite_version_info < _MIN_SQLITE:
            raise StoreError(
                f"SQLite {sqlite3.sqlite_version} is too old for {self._where}: touchlamp needs "
                f"{'.'.join(map(str, _MIN_SQLITE))} or newer; use a newer Python build, or "
                "PostgreSQL"
            )
        try:
            # isolation_level=None: the module issues no BEGIN of its own; _write does.
            # timeout= is SQLite's busy timeout.
            self._conn = sqlite3.connect(
                self._path,
                timeout=busy_timeout_s,
                isolation_level=None,
                check_same_thread=False,
            )
            mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error as error:
            raise StoreUnavailableError(
                f"cannot open {self._where}: {error}; check that the path is a touchlamp store "
                "(or does not exist yet) and that its directory is writable"
            ) from error
        if mode not in ("wal", "memory"):
            _log.warning(
                "%s: journal mode is %s, not WAL (a network file system?); readers will wait "
                "for writers",
                self._where,
                mode,
            )

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def _write(self) -> Iterator[None]:
        with self._translated():
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield
                self._conn.execute("COMMIT")
            finally:
                # After an exception, or a COMMIT that failed; some errors (SQLITE_FULL, I/O)
                # have rolled back already.
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")

    @contextmanager
    def _statement(self) -> Iterator[None]:
        with self._translated():
            yield

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as error:  # locked past the timeout, disk full, I/O
            hint = ""
            if error.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY:  # low byte: primary code
                hint = "; another process held the write lock past the busy timeout: try again"
            raise StoreUnavailableError(f"{self._where} failed: {error}{hint}") from error

    def _execute(self, sql: str, params: Sequence[Param] = ()) -> Rows:
        try:
            return self._conn.execute(sql, params)
        except sqlite3.IntegrityError as error:
            if error.sqlite_errorname in _DUPLICATE:
                raise DuplicateRowError(str(error)) from error
            if error.sqlite_errorname == "SQLITE_CONSTRAINT_FOREIGNKEY":
                raise MissingReferenceError(str(error)) from error
            raise
