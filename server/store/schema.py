"""The store's schema as ordered migrations, shared by SQLite and PostgreSQL.

A migration is applied in one transaction together with the row that records it in
``schema_version``, so a crash leaves the database at the old version or the new one. Never edit
a released migration: append a new one. Where the dialects disagree, a migration gives its
PostgreSQL statements separately; none needs that split yet (both take ``TEXT``,
``BIGINT``, ``BOOLEAN``, foreign keys with ``ON DELETE`` actions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "VERSION_TABLE_DDL", "Dialect", "Migration"]

Dialect = Literal["sqlite", "postgres"]

VERSION_TABLE_DDL = "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY)"


@dataclass(frozen=True, slots=True, kw_only=True)
class Migration:
    version: int
    summary: str
    statements: tuple[str, ...]
    postgres_statements: tuple[str, ...] | None = None  # when PostgreSQL needs other SQL

    def statements_for(self, dialect: Dialect) -> tuple[str, ...]:
        if dialect == "postgres" and self.postgres_statements is not None:
            return self.postgres_statements
        return self.statements


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        version=1,
        summary="lamps, groups, touch records, pairing codes",
        statements=(
            """CREATE TABLE lamp_groups (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL
            )""",
            # join_order ranks members within their group; a lamp without a group has none.
            """CREATE TABLE lamps (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                color TEXT NOT NULL,
                group_id TEXT REFERENCES lamp_groups (id) ON DELETE SET NULL,
                join_order BIGINT,
                online BOOLEAN NOT NULL DEFAULT FALSE,
                last_touch_ms BIGINT,
                added_ms BIGINT NOT NULL
            )""",
            "CREATE INDEX lamps_by_group ON lamps (group_id, join_order)",
            # stream is a 32-bit unsigned number and seq up to 2**53: both need BIGINT.
            """CREATE TABLE touches (
                lamp_id TEXT NOT NULL REFERENCES lamps (id) ON DELETE CASCADE,
                stream BIGINT NOT NULL,
                seq BIGINT NOT NULL,
                received_ms BIGINT NOT NULL,
                PRIMARY KEY (lamp_id, stream, seq)
            )""",
            "CREATE INDEX touches_by_received ON touches (received_ms)",
            """CREATE TABLE pairing_codes (
                code TEXT PRIMARY KEY,
                group_id TEXT NOT NULL REFERENCES lamp_groups (id) ON DELETE CASCADE,
                created_by TEXT NOT NULL REFERENCES lamps (id) ON DELETE CASCADE,
                expires_ms BIGINT NOT NULL
            )""",
            "CREATE INDEX pairing_codes_by_expiry ON pairing_codes (expires_ms)",
            "CREATE INDEX pairing_codes_by_group ON pairing_codes (group_id)",
            "CREATE INDEX pairing_codes_by_creator ON pairing_codes (created_by)",
        ),
    ),
    Migration(
        version=2,
        summary="membership revision: lets a relay cache groups and still see others' changes",
        statements=(
            # One row; its number grows with every change to which lamps exist, their groups or
            # colours (SqlStore._bump_revision), so a relay's cached copy can tell it is current.
            """CREATE TABLE membership_revision (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                revision BIGINT NOT NULL
            )""",
            "INSERT INTO membership_revision (id, revision) VALUES (1, 0)",
        ),
    ),
)

SCHEMA_VERSION = MIGRATIONS[-1].version
