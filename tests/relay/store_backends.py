"""Fresh, empty stores on each backend, for tests that must pass on SQLite and PostgreSQL alike.

``fresh_backend("sqlite" | "postgres", tmp_path)`` yields a ``Backend``: the setting that
``open_store`` takes (a file in ``tmp_path``, or a DSN of a database created for this test and
dropped after it). PostgreSQL is a throwaway cluster the run starts on first use on a free
loopback port (``tests/support/postgres_cluster.py``), never the machine's server on 5432; set
``TOUCHLAMP_TEST_PG_DSN`` (a ``postgresql://`` URL whose user may create databases) to use a
server of your own instead. Either way, a server that cannot be started or reached fails the
test, naming why: the PostgreSQL tests never skip.
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

from tests.support.postgres_cluster import ClusterStartError, session_cluster
from touchlamp.server.store import Store, open_store

__all__ = ["BACKENDS", "Backend", "BackendName", "fresh_backend", "postgres_admin_dsn"]

BackendName = Literal["sqlite", "postgres"]
BACKENDS: tuple[BackendName, ...] = ("sqlite", "postgres")

_external_unreachable: str | None = None  # why, once a connection attempt has failed


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
    """The DSN to create test databases with: ``TOUCHLAMP_TEST_PG_DSN``, else the run's own
    cluster. Fails the test (never skips it) when there is no server to be had."""
    external = os.environ.get("TOUCHLAMP_TEST_PG_DSN")
    if external:
        return _reachable(external)
    try:
        return session_cluster().dsn
    except ClusterStartError as error:
        pytest.fail(f"the tests' own PostgreSQL cluster did not start: {error}", pytrace=False)


def _reachable(dsn: str) -> str:
    global _external_unreachable  # noqa: PLW0603  one failed attempt per session is enough waiting
    if not dsn.startswith(("postgresql://", "postgres://")):
        pytest.fail(f"TOUCHLAMP_TEST_PG_DSN must be a postgresql:// URL, not {dsn[:20]!r}…")
    if _external_unreachable is None:
        import psycopg

        try:
            psycopg.connect(dsn, connect_timeout=3).close()
        except psycopg.OperationalError as error:
            _external_unreachable = str(error).strip().splitlines()[0]
        else:
            return dsn
    pytest.fail(
        f"no PostgreSQL server at {urlsplit(dsn).hostname}:{urlsplit(dsn).port or 5432}, where "
        f"TOUCHLAMP_TEST_PG_DSN points ({_external_unreachable}); start it, or unset "
        "TOUCHLAMP_TEST_PG_DSN to let the tests start a throwaway cluster of their own",
        pytrace=False,
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
