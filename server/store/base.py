"""The relay's store: one small interface, two implementations (SQLite, PostgreSQL).

Both implementations pass the same test suite (tests/relay/test_store.py, parametrised over the
backends). Every method is one transaction: a relay killed in the middle of a pairing change
leaves it wholly done or not done. Times are epoch milliseconds passed in by the caller (the
store never reads a clock), so the pure logic above it stays testable.

Implementations must be safe to call from one thread at a time; the relay gives the store to a
single worker thread (see server/relay.py), and the CLI opens its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "Group",
    "GroupFullError",
    "Lamp",
    "LampExistsError",
    "PairingCode",
    "Store",
    "StoreError",
    "UnknownGroupError",
    "UnknownLampError",
]


class StoreError(Exception):
    """Base of the store's errors; the message names the lamp, group or code concerned."""


class UnknownLampError(StoreError, KeyError):
    pass


class LampExistsError(StoreError, ValueError):
    pass


class UnknownGroupError(StoreError, KeyError):
    pass


class GroupFullError(StoreError, ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Lamp:
    id: str
    name: str
    color: str  # "#rrggbb"
    group_id: str | None
    online: bool
    last_touch_ms: int | None  # when the relay last accepted a touch from it
    added_ms: int


@dataclass(frozen=True, slots=True)
class Group:
    id: str  # short, random, e.g. "g-7f3k2q"
    name: str
    members: tuple[Lamp, ...]  # ordered by when they joined


@dataclass(frozen=True, slots=True)
class PairingCode:
    code: str
    group_id: str
    created_by: str  # lamp id
    expires_ms: int


class Store(Protocol):
    # -- schema ---------------------------------------------------------------------------------
    def migrate(self) -> int:
        """Apply pending migrations (idempotent, at start-up); return the schema version."""

    def close(self) -> None: ...

    # -- lamps ----------------------------------------------------------------------------------
    def add_lamp(self, lamp_id: str, *, name: str, color: str, now_ms: int) -> Lamp:
        """Register a lamp; ``LampExistsError`` if the id is taken."""

    def remove_lamp(self, lamp_id: str) -> Group | None:
        """Forget a lamp (its group membership, codes and touch records); return the group it
        left (as it is after the removal), if any. ``UnknownLampError`` if unknown."""

    def get_lamp(self, lamp_id: str) -> Lamp | None: ...

    def list_lamps(self) -> list[Lamp]: ...

    def set_profile(
        self, lamp_id: str, *, color: str | None = None, name: str | None = None
    ) -> Lamp:
        """Change a lamp's colour and/or name. ``UnknownLampError`` if unknown."""

    def set_online(self, lamp_id: str, *, online: bool) -> bool:
        """Record presence; return True if it changed (False also for an unknown lamp)."""

    # -- groups ---------------------------------------------------------------------------------
    def group_of(self, lamp_id: str) -> Group | None: ...

    def get_group(self, group_id: str) -> Group | None: ...

    def list_groups(self) -> list[Group]: ...

    def create_group(self, lamp_ids: list[str], *, name: str, group_id: str) -> Group:
        """Put these lamps (all must exist) into a new group, taking each out of any group it was
        in (an old group left with no members is deleted). One transaction."""

    def join_group(self, lamp_id: str, group_id: str, *, max_size: int) -> Group:
        """Move a lamp into a group (leaving its old one). ``GroupFullError`` at ``max_size``."""

    def leave_group(self, lamp_id: str) -> Group | None:
        """Take a lamp out of its group; return the old group as it is now (``None`` if the lamp
        had none, or the group was deleted because no member remained). A group of one is kept:
        its member can still create a code for others to join."""

    # -- touches (de-duplication that survives restarts) ---------------------------------------
    def record_touch(self, lamp_id: str, stream: int, seq: int, *, now_ms: int) -> bool:
        """Remember (lamp, stream, seq); True if it is new, False if already recorded. Also
        updates the lamp's ``last_touch_ms``. Atomic, so two relays cannot both see it as new."""

    def prune_touches(self, *, older_than_ms: int) -> int:
        """Forget touch records received before ``older_than_ms``; return how many."""

    # -- pairing codes --------------------------------------------------------------------------
    def save_code(self, code: PairingCode) -> None:
        """Store a new code (the code text is unique; a collision raises ``StoreError``)."""

    def take_code(self, code: str, *, now_ms: int) -> PairingCode | None:
        """Atomically remove and return a code if it exists and has not expired (single use)."""

    def prune_codes(self, *, now_ms: int) -> int: ...
