"""The store's rules, in SQL that SQLite and PostgreSQL both accept; the backends add the driver.

One body of SQL for both backends means one set of semantics: the shared test suite checks the
drivers, not two copies of the rules. Statements use ``?`` placeholders (the PostgreSQL backend
turns them into ``%s``). The one exception is the relay's hot path, ``record_touch`` and
``record_touches``, which PostgreSQL does in one statement each (``postgres.py``).

Each public method is one transaction (``_write``) or one statement (``_statement``: a single
statement is atomic in both databases, which saves PostgreSQL the BEGIN/COMMIT round trips).
Membership changes lock the lamp's row, then its groups' rows in id order: on PostgreSQL two
relays changing the same pairing serialise instead of losing an update or overfilling a group;
on SQLite the locks are plain reads, because ``BEGIN IMMEDIATE`` already admits one writer.

Every change to which lamps exist, their groups or colours also adds one to the membership
revision (``_bump_revision``, last in its transaction: whoever holds that row's lock waits for no
other lock, so it adds no deadlock). The relay caches groups and records touches only while the
revision is the one its cache was read at (``record_touches``), so a pairing made by another relay
or by the CLI is seen by the very next batch of touches.

Over 500 lines on purpose: it is the one body of SQL above, and cutting ``SqlStore`` into parts
would split the locking order that its methods share.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any, ClassVar, Protocol

from touchlamp.errors import TouchlampError
from touchlamp.lifecycle import ClosesOnExit
from touchlamp.server.store.base import (
    CodeExistsError,
    Group,
    GroupExistsError,
    GroupFullError,
    Lamp,
    LampExistsError,
    PairingCode,
    RecordedTouches,
    SchemaTooNewError,
    StoreError,
    TouchKey,
    UnknownGroupError,
    UnknownLampError,
)
from touchlamp.server.store.schema import MIGRATIONS, SCHEMA_VERSION, VERSION_TABLE_DDL, Dialect

__all__ = [
    "DuplicateRowError",
    "MissingReferenceError",
    "Param",
    "Rows",
    "SqlStore",
    "unknown_lamp",
]

_log = logging.getLogger(__name__)

Param = str | int | bool | None


class Rows(Protocol):
    """What both drivers' cursors offer."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> tuple[Any, ...] | None: ...

    def fetchall(self) -> list[tuple[Any, ...]]: ...


class DuplicateRowError(TouchlampError):
    """A unique constraint refused a row (a backend translates its driver's error into this)."""


class MissingReferenceError(TouchlampError):
    """A foreign key refused a row (a backend translates its driver's error into this)."""


_LAMP = "SELECT id, name, color, group_id, online, last_touch_ms, added_ms FROM lamps WHERE id = ?"
_LAMPS = "SELECT id, name, color, group_id, online, last_touch_ms, added_ms FROM lamps ORDER BY id"
# A group and its members in one statement, so a read sees one consistent state.
_GROUP = """SELECT g.id, g.name,
        m.id, m.name, m.color, m.group_id, m.online, m.last_touch_ms, m.added_ms
    FROM lamp_groups g LEFT JOIN lamps m ON m.group_id = g.id
    WHERE g.id = ? ORDER BY m.join_order, m.id"""
_GROUP_OF = """SELECT g.id, g.name,
        m.id, m.name, m.color, m.group_id, m.online, m.last_touch_ms, m.added_ms
    FROM lamp_groups g LEFT JOIN lamps m ON m.group_id = g.id
    WHERE g.id = (SELECT group_id FROM lamps WHERE id = ?) ORDER BY m.join_order, m.id"""
_GROUPS = """SELECT g.id, g.name,
        m.id, m.name, m.color, m.group_id, m.online, m.last_touch_ms, m.added_ms
    FROM lamp_groups g LEFT JOIN lamps m ON m.group_id = g.id
    ORDER BY g.id, m.join_order, m.id"""
_CODE = "SELECT code, group_id, created_by, expires_ms FROM pairing_codes WHERE code = ?"
_REVISION = "SELECT revision FROM membership_revision WHERE id = 1"
_INSERT_TOUCH = (
    "INSERT INTO touches (lamp_id, stream, seq, received_ms) VALUES (?, ?, ?, ?) "
    "ON CONFLICT DO NOTHING"
)
_RECEIVED = "SELECT received_ms FROM touches WHERE lamp_id = ? AND stream = ? AND seq = ?"
_LAST_RECEIVED = "SELECT MAX(received_ms) FROM touches"  # the index on received_ms answers it
# Only forward: relays whose clocks differ a little must not move it back.
_MOVE_LAST_TOUCH = (
    "UPDATE lamps SET last_touch_ms = ? "
    "WHERE id = ? AND (last_touch_ms IS NULL OR last_touch_ms < ?)"
)
_IN_CHUNK = 500  # ids per "IN (…)" list: far below SQLite's limit on parameters


class SqlStore(ClosesOnExit, ABC):
    """The ``Store`` interface over a DB-API connection; see ``SqliteStore``/``PostgresStore``."""

    dialect: ClassVar[Dialect]
    # Read a lamp's group / a group's id, locking the row until the transaction ends.
    _LOCK_LAMP_SQL: ClassVar[str]
    _LOCK_GROUP_SQL: ClassVar[str]
    # Serialises migrations between processes, if the database needs more than its write lock.
    _LOCK_SCHEMA_SQL: ClassVar[str | None] = None

    def __init__(self, *, where: str) -> None:
        self._where = where  # "the SQLite store /var/lib/…": names the store in messages

    # -- what a backend provides ----------------------------------------------------------------
    @abstractmethod
    def _write(self) -> AbstractContextManager[None]:
        """One write transaction: committed on success, rolled back on any exception."""

    @abstractmethod
    def _statement(self) -> AbstractContextManager[None]:
        """One statement on its own, atomic by itself (driver errors translated as in
        ``_write``)."""

    @abstractmethod
    def _execute(self, sql: str, params: Sequence[Param] = ()) -> Rows:
        """Run one statement; raise ``DuplicateRowError``/``MissingReferenceError`` for those."""

    @abstractmethod
    def close(self) -> None: ...

    # -- schema ---------------------------------------------------------------------------------
    def migrate(self) -> int:
        while True:
            with self._write():
                if self._LOCK_SCHEMA_SQL is not None:
                    self._execute(self._LOCK_SCHEMA_SQL)
                self._execute(VERSION_TABLE_DDL)
                current = self._scalar("SELECT COALESCE(MAX(version), 0) FROM schema_version")
                if current > SCHEMA_VERSION:
                    raise SchemaTooNewError(
                        f"{self._where} has schema version {current}, but this touchlamp knows "
                        f"versions up to {SCHEMA_VERSION}; run the touchlamp release that "
                        "migrated it (or newer) — nothing was changed"
                    )
                if current == SCHEMA_VERSION:
                    return current
                step = MIGRATIONS[current]  # versions are numbered 1, 2, … without gaps
                for statement in step.statements_for(self.dialect):
                    self._execute(statement)
                self._execute("INSERT INTO schema_version (version) VALUES (?)", (step.version,))
            _log.info("%s: applied migration %d (%s)", self._where, step.version, step.summary)

    # -- lamps ----------------------------------------------------------------------------------
    def add_lamp(self, lamp_id: str, *, name: str, color: str, now_ms: int) -> Lamp:
        with self._write():
            try:
                self._execute(
                    "INSERT INTO lamps (id, name, color, added_ms) VALUES (?, ?, ?, ?)",
                    (lamp_id, name, color, now_ms),
                )
            except DuplicateRowError:
                raise LampExistsError(
                    f"lamp {lamp_id!r} is already registered; choose another id, or remove it "
                    f"first with `touchlamp relay lamp remove {lamp_id}`"
                ) from None
            self._bump_revision()
        return Lamp(
            id=lamp_id,
            name=name,
            color=color,
            group_id=None,
            online=False,
            last_touch_ms=None,
            added_ms=now_ms,
        )

    def remove_lamp(self, lamp_id: str) -> Group | None:
        with self._write():
            old = self._lock_lamp(lamp_id)
            kept = old is not None and self._detach(lamp_id, old)
            # Its touch records and the codes it created go with it (ON DELETE CASCADE).
            self._execute("DELETE FROM lamps WHERE id = ?", (lamp_id,))
            self._bump_revision()
            return self._group(old) if kept and old is not None else None

    def get_lamp(self, lamp_id: str) -> Lamp | None:
        with self._statement():
            row = self._execute(_LAMP, (lamp_id,)).fetchone()
        return None if row is None else _lamp(row)

    def list_lamps(self) -> list[Lamp]:
        with self._statement():
            return [_lamp(row) for row in self._execute(_LAMPS).fetchall()]

    def set_profile(
        self, lamp_id: str, *, color: str | None = None, name: str | None = None
    ) -> Lamp:
        with self._write():
            rows = self._execute(
                "UPDATE lamps SET color = COALESCE(?, color), name = COALESCE(?, name) "
                "WHERE id = ? "
                "RETURNING id, name, color, group_id, online, last_touch_ms, added_ms",
                (color, name, lamp_id),
            ).fetchall()  # to the end: SQLite finishes a RETURNING statement only then
            if rows:
                self._bump_revision()
        if not rows:
            raise unknown_lamp(lamp_id)
        return _lamp(rows[0])

    def set_online(self, lamp_id: str, *, online: bool) -> bool:
        with self._write():
            changed = self._execute(
                "UPDATE lamps SET online = ? WHERE id = ? AND online <> ?",
                (online, lamp_id, online),
            ).rowcount
        return changed == 1

    # -- groups ---------------------------------------------------------------------------------
    def group_of(self, lamp_id: str) -> Group | None:
        with self._statement():
            groups = _groups(self._execute(_GROUP_OF, (lamp_id,)).fetchall())
        return groups[0] if groups else None

    def get_group(self, group_id: str) -> Group | None:
        with self._statement():
            return self._group(group_id)

    def list_groups(self) -> list[Group]:
        with self._statement():
            return _groups(self._execute(_GROUPS).fetchall())

    def create_group(self, lamp_ids: list[str], *, name: str, group_id: str) -> Group:
        ordered = list(dict.fromkeys(lamp_ids))  # the first mention of a lamp counts
        if not ordered:
            raise StoreError(f"group {group_id!r} needs at least one lamp; name the lamps to pair")
        with self._write():
            try:
                self._execute("INSERT INTO lamp_groups (id, name) VALUES (?, ?)", (group_id, name))
            except DuplicateRowError:
                raise GroupExistsError(
                    f"group id {group_id!r} is taken; choose another (ids are random: try again)"
                ) from None
            # No separate existence check first: an unknown lamp met half-way rolls back the
            # lamps already moved, which is what the transaction is for.
            for lamp_id in ordered:
                old = self._lock_lamp(lamp_id)
                if old is not None:
                    self._lock_groups([old])
                    self._detach(lamp_id, old)
                self._attach(lamp_id, group_id)
            self._bump_revision()
            return self._existing_group(group_id)

    def join_group(self, lamp_id: str, group_id: str, *, max_size: int) -> Group:
        with self._write():
            old = self._lock_lamp(lamp_id)
            self._lock_groups([group_id] if old is None else [group_id, old])
            group = self._existing_group(group_id)
            if old == group_id:
                return group
            if len(group.members) >= max_size:
                raise GroupFullError(
                    f"group {group_id!r} is full ({len(group.members)} of {max_size} lamps); "
                    f"a member must leave before {lamp_id!r} can join"
                )
            if old is not None:
                self._detach(lamp_id, old)
            self._attach(lamp_id, group_id)
            self._bump_revision()
            return self._existing_group(group_id)

    def leave_group(self, lamp_id: str) -> Group | None:
        with self._write():
            old = self._lock_lamp(lamp_id)
            if old is None:
                return None
            self._lock_groups([old])
            kept = self._detach(lamp_id, old)
            self._bump_revision()
            return self._group(old) if kept else None

    # -- touches --------------------------------------------------------------------------------
    def record_touch(self, lamp_id: str, stream: int, seq: int, *, now_ms: int) -> bool:
        try:
            return self._record_touch(lamp_id, stream, seq, now_ms=now_ms)
        except MissingReferenceError:
            raise unknown_lamp(lamp_id) from None

    def _record_touch(self, lamp_id: str, stream: int, seq: int, *, now_ms: int) -> bool:
        with self._write():
            new = self._execute(_INSERT_TOUCH, (lamp_id, stream, seq, now_ms)).rowcount == 1
            if new:
                self._execute(_MOVE_LAST_TOUCH, (now_ms, lamp_id, now_ms))
        return new

    def record_touches(
        self,
        touches: Sequence[TouchKey],
        *,
        now_ms: int,
        watch: Collection[str],
        revision: int,
    ) -> RecordedTouches | None:
        # One transaction of many small statements: on SQLite a statement is a function call,
        # and what costs is the transaction (the write lock, the commit), paid once here.
        with self._write():
            if self._scalar(_REVISION) != revision:
                return None
            before = self._last_touches(watch)
            new: list[bool] = []
            received: list[int] = []
            moved: set[str] = set()
            for touch in touches:
                key = (touch.lamp_id, touch.stream, touch.seq)
                try:
                    rows = self._execute(_INSERT_TOUCH, (*key, now_ms))
                except MissingReferenceError:
                    raise unknown_lamp(touch.lamp_id) from None
                new.append(rows.rowcount == 1)
                if new[-1]:
                    moved.add(touch.lamp_id)
                    received.append(now_ms)
                else:  # a repeat: rare, so looked up only then
                    received.append(self._scalar(_RECEIVED, key))
            for lamp_id in sorted(moved):
                self._execute(_MOVE_LAST_TOUCH, (now_ms, lamp_id, now_ms))
        return RecordedTouches(new=tuple(new), received_ms=tuple(received), last_touch_ms=before)

    def last_received_ms(self) -> int | None:
        with self._statement():
            row = self._execute(_LAST_RECEIVED).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def membership_revision(self) -> int:
        with self._statement():
            return self._scalar(_REVISION)

    def prune_touches(self, *, older_than_ms: int) -> int:
        with self._write():
            return self._execute(
                "DELETE FROM touches WHERE received_ms < ?", (older_than_ms,)
            ).rowcount

    # -- pairing codes --------------------------------------------------------------------------
    def save_code(self, code: PairingCode) -> None:
        with self._write():
            # The creator's row lock keeps it (and so its group) in place until the commit.
            if self._lock_lamp(code.created_by) != code.group_id:
                if self._execute(self._LOCK_GROUP_SQL, (code.group_id,)).fetchone() is None:
                    raise _unknown_group(code.group_id)
                raise StoreError(
                    f"lamp {code.created_by!r} is not a member of group {code.group_id!r}; "
                    "a pairing code can only invite into its creator's own group"
                )
            try:
                self._execute(
                    "INSERT INTO pairing_codes (code, group_id, created_by, expires_ms) "
                    "VALUES (?, ?, ?, ?)",
                    (code.code, code.group_id, code.created_by, code.expires_ms),
                )
            except DuplicateRowError:
                # The code itself stays out of the message: it is a short-lived secret.
                raise CodeExistsError(
                    f"a pairing code with the same text exists (new code for group "
                    f"{code.group_id!r}); generate another"
                ) from None

    def take_code(self, code: str, *, now_ms: int) -> PairingCode | None:
        with self._write():
            rows = self._execute(
                "DELETE FROM pairing_codes WHERE code = ? AND expires_ms > ? "
                "RETURNING code, group_id, created_by, expires_ms",
                (code, now_ms),
            ).fetchall()  # to the end: SQLite finishes a RETURNING statement only then
        return _code(rows[0]) if rows else None

    def get_code(self, code: str) -> PairingCode | None:
        with self._statement():
            row = self._execute(_CODE, (code,)).fetchone()
        return None if row is None else _code(row)

    def prune_codes(self, *, now_ms: int) -> int:
        with self._write():
            return self._execute(
                "DELETE FROM pairing_codes WHERE expires_ms <= ?", (now_ms,)
            ).rowcount

    # -- steps inside a transaction -------------------------------------------------------------
    def _scalar(self, sql: str, params: Sequence[Param] = ()) -> int:
        row = self._execute(sql, params).fetchone()
        if row is None:
            raise StoreError(f"{self._where}: no result for {sql!r}")
        return int(row[0])

    def _last_touches(self, lamp_ids: Collection[str]) -> dict[str, int | None]:
        ordered = sorted(lamp_ids)
        found: dict[str, int | None] = {}
        for start in range(0, len(ordered), _IN_CHUNK):
            chunk = ordered[start : start + _IN_CHUNK]
            marks = ", ".join("?" * len(chunk))
            rows = self._execute(
                f"SELECT id, last_touch_ms FROM lamps WHERE id IN ({marks})",  # noqa: S608  only "?"s
                chunk,
            ).fetchall()
            found.update((row[0], row[1]) for row in rows)
        return found

    def _bump_revision(self) -> None:
        """Last in a transaction that changes lamps, groups or colours (see the module's doc)."""
        self._execute("UPDATE membership_revision SET revision = revision + 1 WHERE id = 1")

    def _lock_lamp(self, lamp_id: str) -> str | None:
        """Lock the lamp's row; return its group id. ``UnknownLampError`` if there is none."""
        row = self._execute(self._LOCK_LAMP_SQL, (lamp_id,)).fetchone()
        if row is None:
            raise unknown_lamp(lamp_id)
        group_id: str | None = row[0]
        return group_id

    def _lock_groups(self, group_ids: Iterable[str]) -> None:
        for group_id in sorted(set(group_ids)):  # one order everywhere, so no deadlock
            self._execute(self._LOCK_GROUP_SQL, (group_id,))

    def _attach(self, lamp_id: str, group_id: str) -> None:
        """Make the lamp the group's newest member (the group's row must be locked)."""
        self._execute(
            "UPDATE lamps SET group_id = ?, join_order = "
            "(SELECT COALESCE(MAX(join_order), 0) + 1 FROM lamps WHERE group_id = ?) "
            "WHERE id = ?",
            (group_id, group_id, lamp_id),
        )

    def _detach(self, lamp_id: str, group_id: str) -> bool:
        """Take the lamp out of its group, with the codes it created (they invited into this
        group); delete the group if nobody is left. Return whether the group remains."""
        self._execute(
            "UPDATE lamps SET group_id = NULL, join_order = NULL WHERE id = ?", (lamp_id,)
        )
        self._execute("DELETE FROM pairing_codes WHERE created_by = ?", (lamp_id,))
        deleted = self._execute(
            "DELETE FROM lamp_groups WHERE id = ? "
            "AND NOT EXISTS (SELECT 1 FROM lamps WHERE group_id = ?)",
            (group_id, group_id),
        ).rowcount
        return deleted == 0

    def _group(self, group_id: str) -> Group | None:
        groups = _groups(self._execute(_GROUP, (group_id,)).fetchall())
        return groups[0] if groups else None

    def _existing_group(self, group_id: str) -> Group:
        group = self._group(group_id)
        if group is None:
            raise _unknown_group(group_id)
        return group


def unknown_lamp(lamp_id: str) -> UnknownLampError:
    """The error for an unregistered lamp, with the fix (shared with the backends)."""
    return UnknownLampError(
        f"lamp {lamp_id!r} is not registered; add it with `touchlamp relay lamp add {lamp_id}`"
    )


def _unknown_group(group_id: str) -> UnknownGroupError:
    return UnknownGroupError(
        f"group {group_id!r} does not exist (a group is deleted when its last member leaves); "
        "see `touchlamp relay group list`"
    )


def _lamp(row: Sequence[Any]) -> Lamp:
    return Lamp(
        id=row[0],
        name=row[1],
        color=row[2],
        group_id=row[3],
        online=bool(row[4]),  # SQLite hands back 0/1
        last_touch_ms=row[5],
        added_ms=row[6],
    )


def _groups(rows: Iterable[tuple[Any, ...]]) -> list[Group]:
    """Rows of (group id, group name, member columns…) in order → groups with their members."""
    found: dict[str, tuple[str, list[Lamp]]] = {}
    for row in rows:
        _name, members = found.setdefault(row[0], (row[1], []))
        if row[2] is not None:  # the LEFT JOIN's row for a group without members
            members.append(_lamp(row[2:]))
    return [
        Group(id=group_id, name=name, members=tuple(members))
        for group_id, (name, members) in found.items()
    ]


def _code(row: Sequence[Any]) -> PairingCode:
    return PairingCode(code=row[0], group_id=row[1], created_by=row[2], expires_ms=row[3])
