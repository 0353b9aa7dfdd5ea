"""The PostgreSQL store: for several relays sharing one database.

Needs psycopg 3, which comes with the ``postgres`` extra; this module is imported only when a
PostgreSQL DSN is configured, so the relay on SQLite runs without it.

One connection in autocommit mode: a write is an explicit transaction (READ COMMITTED, with
``SELECT … FOR UPDATE`` where the rules need it, see ``sql.py``), a read is one statement. A
connection that broke (database restarted) fails the call in progress with
``StoreUnavailableError`` and is replaced on the next call; a call is never retried here, because
a commit whose answer was lost may or may not have happened.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from touchlamp.server.store.base import (
    RecordedTouches,
    StoreError,
    StoreUnavailableError,
    TouchKey,
)
from touchlamp.server.store.sql import (
    DuplicateRowError,
    MissingReferenceError,
    Param,
    Rows,
    SqlStore,
    unknown_lamp,
)

try:
    import psycopg
    from psycopg import errors as pg_errors
    from psycopg.conninfo import conninfo_to_dict
except ImportError as missing:
    raise StoreError(
        "the PostgreSQL store needs psycopg, which is not installed: "
        "pip install 'touchlamp[postgres]' (or use a SQLite path instead of a postgresql:// DSN)"
    ) from missing

__all__ = ["PostgresStore"]

# pg_advisory_xact_lock key that serialises migrations between relays starting together.
_SCHEMA_LOCK_KEY = 0x746F7563686C616D  # "touchlam"


class PostgresStore(SqlStore):
    """The store in a PostgreSQL database (``postgresql://user@host:5432/dbname``).

    Used by one thread at a time. Several relays may share the database.
    """

    dialect = "postgres"
    _LOCK_LAMP_SQL = "SELECT group_id FROM lamps WHERE id = ? FOR UPDATE"
    _LOCK_GROUP_SQL = "SELECT id FROM lamp_groups WHERE id = ? FOR UPDATE"
    _LOCK_SCHEMA_SQL = f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK_KEY})"

    def __init__(self, dsn: str, *, connect_timeout_s: int = 10) -> None:
        super().__init__(where=f"the PostgreSQL store {_describe(dsn)}")
        self._dsn = dsn
        self._connect_timeout_s = connect_timeout_s
        self._conn = self._connect()

    def close(self) -> None:
        self._conn.close()

    def _connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        try:
            return psycopg.connect(
                self._dsn, autocommit=True, connect_timeout=self._connect_timeout_s
            )
        except psycopg.OperationalError as error:
            raise StoreUnavailableError(
                f"cannot connect to {self._where}: {_first_line(error)}; check that PostgreSQL "
                "is running there and that the DSN's user, password and database are right"
            ) from error

    def _live(self) -> psycopg.Connection[tuple[Any, ...]]:
        if self._conn.broken:
            self._conn = self._connect()
        return self._conn

    @contextmanager
    def _write(self) -> Iterator[None]:
        with self._translated(), self._live().transaction():
            yield

    @contextmanager
    def _statement(self) -> Iterator[None]:
        with self._translated():
            self._live()
            yield

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except psycopg.OperationalError as error:  # connection lost, deadlock, shutdown
            hint = "the connection failed; it is reopened on the next call"
            if error.sqlstate is not None and error.sqlstate.startswith("40"):
                hint = "another relay changed the same rows at the same time: try again"
            raise StoreUnavailableError(
                f"{self._where} failed: {_first_line(error)}; {hint}"
            ) from error

    def _record_touch(self, lamp_id: str, stream: int, seq: int, *, now_ms: int) -> bool:
        # One statement, so one round trip on the relay's hot path instead of four (BEGIN,
        # INSERT, UPDATE, COMMIT). A racing relay's INSERT waits for this one's row, then does
        # nothing: exactly one of them counts the touch as new.
        with self._statement():
            row = self._execute(_RECORD_TOUCH, (lamp_id, stream, seq, now_ms, now_ms, now_ms))
            counted = row.fetchone()
        return counted is not None and counted[0] == 1

    def record_touches(
        self,
        touches: Sequence[TouchKey],
        *,
        now_ms: int,
        watch: Collection[str],
        revision: int,
    ) -> RecordedTouches | None:
        # One statement, one round trip for the whole batch: its snapshot reads the revision
        # and the watched lamps as they were before its own inserts and update. Sorted by key,
        # so two relays recording the same touches lock them in the same order.
        ordered = sorted({(t.lamp_id, t.stream, t.seq) for t in touches})
        try:
            with self._statement():
                rows = self._conn.execute(
                    _RECORD_TOUCHES,
                    {
                        "lamps": [key[0] for key in ordered],
                        "streams": [key[1] for key in ordered],
                        "seqs": [key[2] for key in ordered],
                        "revision": revision,
                        "now": now_ms,
                        "watch": sorted(watch),
                    },
                ).fetchall()
        except pg_errors.ForeignKeyViolation:
            missing = sorted({t.lamp_id for t in touches} - set(self._existing(touches)))
            raise unknown_lamp(missing[0] if missing else touches[0].lamp_id) from None
        if [row[2] for row in rows if row[0] == 0] != [revision]:
            return None
        recorded = {(row[1], row[2], row[3]) for row in rows if row[0] == 1}
        before = {row[1]: row[2] for row in rows if row[0] == 2}
        # Recorded before this statement; a touch a concurrent relay recorded meanwhile is not
        # in this statement's snapshot and counts as recorded now (it was, give or take).
        earlier = {
            (row[1], row[2], row[3]): row[4] for row in rows if row[0] == 3 and row[4] is not None
        }
        new: list[bool] = []
        received: list[int] = []
        for touch in touches:
            key = (touch.lamp_id, touch.stream, touch.seq)
            new.append(key in recorded)
            recorded.discard(key)  # a repeat within the batch is not new
            received.append(earlier.get(key, now_ms))
        return RecordedTouches(new=tuple(new), received_ms=tuple(received), last_touch_ms=before)

    def _existing(self, touches: Sequence[TouchKey]) -> list[str]:
        with self._statement():
            rows = self._conn.execute(
                "SELECT id FROM lamps WHERE id = ANY(%s)", ([t.lamp_id for t in touches],)
            ).fetchall()
        return [row[0] for row in rows]

    def _execute(self, sql: str, params: Sequence[Param] = ()) -> Rows:
        try:
            return self._conn.execute(_pyformat(sql), params)
        except pg_errors.UniqueViolation as error:
            raise DuplicateRowError(str(error)) from error
        except pg_errors.ForeignKeyViolation as error:
            raise MissingReferenceError(str(error)) from error


_RECORD_TOUCH = """WITH new AS (
        INSERT INTO touches (lamp_id, stream, seq, received_ms) VALUES (?, ?, ?, ?)
        ON CONFLICT DO NOTHING RETURNING lamp_id
    ), moved AS (
        UPDATE lamps SET last_touch_ms = ?
        WHERE id IN (SELECT lamp_id FROM new) AND (last_touch_ms IS NULL OR last_touch_ms < ?)
    )
    SELECT count(*) FROM new"""


# Rows: (0, -, revision, -, -); (1, lamp, stream, seq, -) for each touch recorded now; (2, lamp,
# last_touch_ms, -, -) for each watched lamp, as before this statement (the CTEs and the final
# SELECT all read one snapshot); (3, lamp, stream, seq, received_ms) for each touch that was
# recorded before (only those not recorded now are looked up, each by its primary key).
# Nothing is inserted unless the revision is still the caller's.
_RECORD_TOUCHES = """WITH current AS (
        SELECT revision FROM membership_revision WHERE id = 1
    ), input AS (
        SELECT t.lamp_id, t.stream, t.seq
        FROM unnest(%(lamps)s::text[], %(streams)s::bigint[], %(seqs)s::bigint[])
            AS t(lamp_id, stream, seq)
        WHERE (SELECT revision FROM current) = %(revision)s
        ORDER BY t.lamp_id, t.stream, t.seq
    ), new AS (
        INSERT INTO touches (lamp_id, stream, seq, received_ms)
        SELECT lamp_id, stream, seq, %(now)s FROM input
        ON CONFLICT DO NOTHING RETURNING lamp_id, stream, seq
    ), moved AS (
        UPDATE lamps SET last_touch_ms = %(now)s
        WHERE id IN (SELECT lamp_id FROM new)
            AND (last_touch_ms IS NULL OR last_touch_ms < %(now)s)
    ), repeated AS (
        SELECT lamp_id, stream, seq FROM input
        EXCEPT SELECT lamp_id, stream, seq FROM new
    )
    SELECT 0, NULL, revision, NULL::bigint, NULL::bigint FROM current
    UNION ALL SELECT 1, lamp_id, stream, seq, NULL FROM new
    UNION ALL SELECT 2, id, last_touch_ms, NULL, NULL FROM lamps WHERE id = ANY(%(watch)s::text[])
    UNION ALL SELECT 3, r.lamp_id, r.stream, r.seq, (
        SELECT t.received_ms FROM touches t
        WHERE t.lamp_id = r.lamp_id AND t.stream = r.stream AND t.seq = r.seq
    ) FROM repeated r"""


@functools.cache
def _pyformat(sql: str) -> str:
    # The shared SQL has no literal "?" or "%", so the placeholders are all there is to change.
    return sql.replace("?", "%s")


def _describe(dsn: str) -> str:
    """The DSN without its password, for messages."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as error:
        raise StoreError(
            f"the PostgreSQL DSN cannot be parsed ({_first_line(error)}); "
            "write it as postgresql://user:password@host:5432/dbname"
        ) from None
    user = params.get("user", "")
    host = params.get("host", "localhost")
    port = params.get("port", 5432)
    return f"postgresql://{user}{'@' if user else ''}{host}:{port}/{params.get('dbname', '')}"


def _first_line(error: Exception) -> str:
    return str(error).strip().split("\n", 1)[0]
