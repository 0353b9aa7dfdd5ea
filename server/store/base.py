"""The relay's store: one small interface, two implementations (SQLite, PostgreSQL).

Both implementations pass the same test suite (tests/relay/test_store.py, parametrised over the
backends). Every method is one transaction: a relay killed in the middle of a pairing change
leaves it wholly done or not done. Times are epoch milliseconds passed in by the caller (the
store never reads a clock), so the pure logic above it stays testable.

Implementations must be safe to call from one thread at a time; the relay gives the store to a
single worker thread (see server/relay.py), and the CLI opens its own.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol, Self

from touchlamp.errors import TouchlampError

__all__ = [
    "CodeExistsError",
    "Group",
    "GroupExistsError",
    "GroupFullError",
    "Lamp",
    "LampExistsError",
    "PairingCode",
    "RecordedTouches",
    "SchemaTooNewError",
    "Store",
    "StoreError",
    "StoreUnavailableError",
    "TouchKey",
    "UnknownGroupError",
    "UnknownLampError",
]


class StoreError(TouchlampError):
    """Base of the store's errors; the message names the lamp, group or code concerned."""

    def __str__(self) -> str:
        # KeyError's own __str__ quotes its argument; the message is meant to be read as written.
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class UnknownLampError(StoreError, KeyError):
    pass


class LampExistsError(StoreError, ValueError):
    pass


class UnknownGroupError(StoreError, KeyError):
    pass


class GroupExistsError(StoreError, ValueError):
    """The group id is taken (ids are random, so the caller may retry with a fresh one)."""


class GroupFullError(StoreError, ValueError):
    pass


class CodeExistsError(StoreError, ValueError):
    """The pairing code text is taken (codes are random, so the caller may retry)."""


class SchemaTooNewError(StoreError, RuntimeError):
    """The database was migrated by a newer touchlamp than this one; nothing was changed."""


class StoreUnavailableError(StoreError, RuntimeError):
    """The database could not be reached, was busy past the timeout, or aborted the transaction
    (a deadlock between relays). The operation did not happen; retrying later is safe."""


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
class TouchKey:
    """What identifies a touch for de-duplication: (lamp, stream, seq)."""

    lamp_id: str
    stream: int
    seq: int


@dataclass(frozen=True, slots=True)
class RecordedTouches:
    """What ``record_touches`` did and saw."""

    new: tuple[bool, ...]  # one per touch given, in order: recorded now (not before)
    # One per touch given, in order: when it was recorded (``received_ms``): ``now_ms`` if new,
    # else when it was first recorded (server/confirmations.py needs it for repeats). A touch
    # that another relay's transaction recorded while this one ran counts as recorded now.
    received_ms: tuple[int, ...]
    # Each watched lamp's ``last_touch_ms`` as it was before these touches (absent: unknown lamp).
    last_touch_ms: dict[str, int | None]


@dataclass(frozen=True, slots=True)
class PairingCode:
    code: str
    group_id: str
    created_by: str  # lamp id
    expires_ms: int


class Store(Protocol):
    # -- schema ---------------------------------------------------------------------------------
    def migrate(self) -> int:
        """Apply pending migrations (idempotent, at start-up); return the schema version.
        ``SchemaTooNewError`` if the database was migrated by a newer touchlamp."""

    def close(self) -> None: ...

    def __enter__(self) -> Self:
        """``with open_store(…) as store:`` closes it when the block ends."""

    def __exit__(self, *_exception: object) -> None: ...

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
    # A lamp that leaves a group (by leaving, joining or being put into another, or being
    # removed) takes the pairing codes it created with it: they invited into its old group.

    def group_of(self, lamp_id: str) -> Group | None:
        """The lamp's group; ``None`` if it has none or is unknown."""

    def get_group(self, group_id: str) -> Group | None: ...

    def list_groups(self) -> list[Group]:
        """All groups, ordered by id."""

    def create_group(self, lamp_ids: list[str], *, name: str, group_id: str) -> Group:
        """Put these lamps (all must exist; at least one) into a new group, in the given order,
        taking each out of any group it was in (an old group left with no members is deleted).
        One transaction: ``UnknownLampError`` or ``GroupExistsError`` changes nothing."""

    def join_group(self, lamp_id: str, group_id: str, *, max_size: int) -> Group:
        """Move a lamp into a group (leaving its old one). ``GroupFullError`` at ``max_size``;
        ``UnknownLampError`` / ``UnknownGroupError``. Already a member: the group, unchanged."""

    def leave_group(self, lamp_id: str) -> Group | None:
        """Take a lamp out of its group; return the old group as it is now (``None`` if the lamp
        had none, or the group was deleted because no member remained). A group of one is kept:
        its member can still create a code for others to join. ``UnknownLampError``."""

    # -- touches (de-duplication that survives restarts) ---------------------------------------
    def record_touch(self, lamp_id: str, stream: int, seq: int, *, now_ms: int) -> bool:
        """Remember (lamp, stream, seq); True if it is new, False if already recorded. A new
        touch also moves the lamp's ``last_touch_ms`` forward to ``now_ms``. Atomic, so two
        relays cannot both see it as new. ``UnknownLampError`` if the lamp is not registered."""

    def record_touches(
        self,
        touches: Sequence[TouchKey],
        *,
        now_ms: int,
        watch: Collection[str],
        revision: int,
    ) -> RecordedTouches | None:
        """``record_touch`` for many touches in one transaction — if the membership revision is
        still ``revision``; otherwise ``None`` and nothing is recorded (the caller decided with
        out-of-date groups: it reloads them and tries again). A touch repeated within
        ``touches`` is new at most once, the first time. Also reads the ``last_touch_ms`` of the
        ``watch`` lamps as it was before these touches, in the same transaction, and when each
        touch that is not new was first recorded (only those are looked up: they are rare).
        ``UnknownLampError`` if a touch's lamp is not registered (then nothing is recorded)."""

    def last_received_ms(self) -> int | None:
        """The newest ``received_ms`` of any recorded touch; ``None`` if there is none."""

    def membership_revision(self) -> int:
        """A number that grows with every change to which lamps exist, which group each is in,
        and their colours (``add_lamp``, ``remove_lamp``, ``set_profile`` and the group
        methods) — not with touches, presence or codes. A copy of memberships read after this
        number was read is current for as long as the number stays the same."""

    def prune_touches(self, *, older_than_ms: int) -> int:
        """Forget touch records received before ``older_than_ms``; return how many."""

    # -- pairing codes --------------------------------------------------------------------------
    def save_code(self, code: PairingCode) -> None:
        """Store a new code. Its creator must be a member of its group (``StoreError``
        otherwise); ``CodeExistsError`` if the text is taken; ``UnknownLampError`` /
        ``UnknownGroupError``."""

    def take_code(self, code: str, *, now_ms: int) -> PairingCode | None:
        """Atomically remove and return a code if it exists and has not expired (single use):
        valid while ``now_ms < expires_ms``. An expired code is left for ``prune_codes``, so
        ``get_code`` can still tell "expired" from "wrong"."""

    def get_code(self, code: str) -> PairingCode | None:
        """A stored code, expired or not, without taking it (to tell the user *why* a code was
        refused); ``None`` if there is no such code (never created, taken, or pruned)."""

    def prune_codes(self, *, now_ms: int) -> int:
        """Delete codes that expired (``expires_ms <= now_ms``); return how many."""
