"""The relay's store: lamps, groups, touch records and pairing codes, on SQLite or PostgreSQL.

``open_store(setting)`` is the way in: it picks the backend from the setting, opens it and
applies pending migrations. The interface and its types are in ``base``.
"""

from __future__ import annotations

import os
from pathlib import Path

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
    Store,
    StoreError,
    StoreUnavailableError,
    TouchKey,
    UnknownGroupError,
    UnknownLampError,
)
from touchlamp.server.store.schema import SCHEMA_VERSION
from touchlamp.server.store.sqlite import SqliteStore

__all__ = [
    "SCHEMA_VERSION",
    "CodeExistsError",
    "Group",
    "GroupExistsError",
    "GroupFullError",
    "Lamp",
    "LampExistsError",
    "PairingCode",
    "RecordedTouches",
    "SchemaTooNewError",
    "SqliteStore",
    "Store",
    "StoreError",
    "StoreUnavailableError",
    "TouchKey",
    "UnknownGroupError",
    "UnknownLampError",
    "is_postgres_dsn",
    "open_store",
]

_POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_dsn(url_or_path: str | os.PathLike[str]) -> bool:
    """True for a ``postgresql://`` (or ``postgres://``) DSN; anything else is a SQLite path."""
    return os.fspath(url_or_path).startswith(_POSTGRES_SCHEMES)


def open_store(url_or_path: str | os.PathLike[str]) -> Store:
    """Open the store named by a setting and bring its schema up to date.

    A ``postgresql://…`` DSN opens ``PostgresStore`` (needs the ``postgres`` extra); anything
    else is a SQLite file path (``~`` expanded, parent directories created; ``":memory:"`` for a
    throwaway store). Raises ``SchemaTooNewError`` if a newer touchlamp migrated the database,
    ``StoreUnavailableError`` if it cannot be opened, ``StoreError`` for a bad setting.
    """
    target = os.fspath(url_or_path)
    store: Store
    if is_postgres_dsn(target):
        # Imported here: psycopg is an optional extra, and its absence is reported by the module.
        from touchlamp.server.store.postgres import PostgresStore  # noqa: PLC0415  see above

        store = PostgresStore(target)
    elif target == ":memory:":
        store = SqliteStore(target)
    else:
        path = Path(target).expanduser()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreUnavailableError(
                f"cannot create the directory for the SQLite store {path}: {error.strerror}; "
                "choose a writable location"
            ) from error
        store = SqliteStore(path)
    try:
        store.migrate()
    except BaseException:
        store.close()
        raise
    return store
