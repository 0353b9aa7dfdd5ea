"""Which group each lamp is in, kept in memory for the forwarding rule, and how it stays current.

Reading a lamp's group from the store for every touch was a fifth of the relay's work; groups
change a few times a day. So the rule reads them from here, and the store says whether that copy
is still current: it counts every change to which lamps exist, their groups and colours (the
*membership revision*, ``Store.membership_revision``), whichever process made it — this relay,
another relay on the same store, or ``touchlamp relay pair``. The copy remembers the revision it
was read at, and the rule records its touches only if the store's revision is still that one
(``Store.record_touches``, in the same transaction); otherwise it ``refresh()``-es and decides
again. So a touch is never forwarded by a membership older than the transaction that records it.

The revision is read *before* the groups it labels: a change that lands in between makes the copy
newer than its label, never older, and the next check reloads it.

Only what the rule needs is kept (member ids and colours): presence and last-touch times change
all the time and are read fresh. Bounded: past ``max_lamps`` entries the copy starts over.
"""

from __future__ import annotations

from dataclasses import dataclass

from touchlamp.server.store.base import Store

__all__ = ["Member", "Membership", "MembershipCache"]


@dataclass(frozen=True, slots=True)
class Member:
    id: str
    color: str  # "#rrggbb": a mutual answer shows it


@dataclass(frozen=True, slots=True)
class Membership:
    """A lamp as the forwarding rule sees it."""

    known: bool  # registered in the store
    members: tuple[Member, ...] | None  # its group in joining order, itself included; None: none


_UNKNOWN = Membership(known=False, members=None)
_UNPAIRED = Membership(known=True, members=None)


class MembershipCache:
    """Not thread-safe (the relay's worker thread uses it, with the store)."""

    def __init__(self, store: Store, *, max_lamps: int = 100_000) -> None:
        self._store = store
        self._max_lamps = max_lamps
        self._lamps: dict[str, Membership] = {}
        self._revision: int | None = None

    @property
    def revision(self) -> int:
        """The store's membership revision this copy is (at least) as new as."""
        if self._revision is None:
            self._revision = self._store.membership_revision()
        return self._revision

    def get(self, lamp_id: str) -> Membership:
        found = self._lamps.get(lamp_id)
        if found is None:
            found = self._load(lamp_id)
        return found

    def refresh(self) -> None:
        """Forget everything: the store has moved on (or may have; e.g. this relay paired)."""
        self._lamps.clear()
        self._revision = None

    def __len__(self) -> int:
        return len(self._lamps)

    def _load(self, lamp_id: str) -> Membership:
        _ = self.revision  # read before the group: see the module's doc
        if len(self._lamps) >= self._max_lamps:
            self._lamps.clear()
        group = self._store.group_of(lamp_id)
        if group is None:
            found = _UNPAIRED if self._store.get_lamp(lamp_id) is not None else _UNKNOWN
            self._lamps[lamp_id] = found
            return found
        members = tuple(Member(id=lamp.id, color=lamp.color) for lamp in group.members)
        shared = Membership(known=True, members=members)
        for member in members:  # one read serves the whole group
            self._lamps[member.id] = shared
        return shared
