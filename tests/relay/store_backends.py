"""Fresh, empty stores on each backend, for tests that must pass on SQLite and PostgreSQL alike.

``fresh_backend("sqlite" | "postgres", tmp_path)`` yields a ``Backend``: the setting that
``open_store`` takes (a file in ``tmp_path``, or a DSN of a database created for this test and
dropped after it). PostgreSQL comes from ``TOUCHLAMP_TEST_PG_DSN`` (a ``postgresql://`` URL,
default ``postgresql://postgres@127.0.0.1:5432/postgres``; its user must be allowed to create
databases); if no server answers there, the test is skipped and says why.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import pytest

from touchlamp.server.store import Store, open_store

__all__ = ["BACKENDS", "Backend", "BackendName", "fresh_backend", "postgres_admin_dsn"]

BackendName = Literal["sqlite", "postgres"]
BACKENDS: tuple[BackendName, ...] = ("sqlite", "postgres")
DEFAULT_PG_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"

_pg_unreachable: str | None = None  # why, once a connection attempt has failed


@dataclass(frozen=True, slots=True, kw_only=True)
class Backend:
    name: BackendName
    url: str  # what open_store takes

    def open(self) -> Store:
        return open_store(self.url)

    def execute(self, sql: str) -> None:
        """Run one statement straight on the database, beside the store (to corrupt it)."""
        if self.name == "sqlite":
            with closing(sqlite3.connect(self.url)) as lite, lite:
                lite.execute(sql)
            return
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as pg:
            pg.execute(sql.encode())  # bytes: a query built at run time, on purpose


def postgres_admin_dsn() -> str:
    """The DSN to create test databases with, or skip the test if no server answers there."""
    global _pg_unreachable  # noqa: PLW0603  one failed attempt per session is enough waiting
    dsn = os.environ.get("TOUCHLAMP_TEST_PG_DSN", DEFAULT_PG_DSN)
    if not dsn.startswith(("postgresql://", "postgres://")):
        pytest.fail(f"TOUCHLAMP_TEST_PG_DSN must be a postgresql:// URL, not {dsn[:20]!r}…")
    if _pg_unreachable is None:
        import psycopg

        try:
            psycopg.connect(dsn, connect_timeout=3).close()
        except psycopg.OperationalError as error:
            _pg_unreachable = str(error).strip().splitlines()[0]
        else:
            return dsn
    pytest.skip(
        f"no PostgreSQL server at {urlsplit(dsn).hostname}:{urlsplit(dsn).port or 5432} "
        f"({_pg_unreachable}); start one, or point TOUCHLAMP_TEST_PG_DSN at one"
    )


@contextmanager
def fresh_backend(name: BackendName, tmp_path: Path) -> Iterator[Backend]:
    if name == "sqlite":
        yield Backend(name=name, url=str(tmp_path / "state" / "relay.db"))
        return
    with _fresh_postgres_database() as url:
        yield Backend(name=name, url=url)


@contextmanager
def _fresh_postgres_database() -> Iterator[str]:
    import psycopg
    from psycopg import sql

    admin_dsn = postgres_admin_dsn()
    database = f"touchlamp_test_{secrets.token_hex(6)}"
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        try:
            yield urlsplit(admin_dsn)._replace(path=f"/{database}").geturl()
        finally:
            # FORCE: a test that failed may have left a store open.
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
            )
