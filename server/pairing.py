"""Pairing by code: create, join, leave, status and colour — pure logic over the store.

A lamp owner without operator access pairs like this: lamp A asks for a code (``create``), its
owner reads it out, lamp B sends it (``join``) and is moved into A's group. Every answer is a
``PairResponse``; a refusal has ``ok: false``, an ``error`` code and a plain-words ``reason``.

Codes
    ``code_length`` (default 8) characters drawn with ``secrets`` from the 30-symbol alphabet
    ``23456789ABCDEFGHJKMNPQRSTVWXYZ`` — no 0/O, 1/I/L, and no U (Crockford's choice, so no
    accidental words). Joining accepts lower case and ignores dashes and spaces. A code is
    single use (the store removes it atomically when it is taken; it also goes when its creator
    leaves the group it invites into), expires after
    ``code_ttl_seconds`` (default 10 minutes), and one lamp holds at most
    ``max_codes_per_lamp`` (default 3) live codes.

Guessing
    A join with a wrong code counts as a failure. One lamp is locked out after
    ``lockout_failures`` (5) failures within ``lockout_seconds`` (15 min); all lamps together
    are limited to ``global_failures`` (60) per ``global_window_seconds`` (1 h), after which every
    join is refused as "busy" until the window moves on (so stolen credentials of many lamps do
    not multiply the rate). A code that cannot be valid (wrong length or alphabet) is refused
    without counting, because checking it reveals nothing; so is an expired code (a slow owner,
    and an expired code opens nothing).

    The arithmetic, with the defaults: there are 30**8 ≈ 6.6e11 codes. The global limit allows
    at most 60 * 24 * 365 ≈ 5.3e5 wrong guesses a year. With L codes alive at any moment, a
    guess hits one with probability L / 6.6e11, so a year of guessing at the limit succeeds
    with probability at most 5.3e5 * L / 6.6e11 ≈ 8e-7 * L: about 8 in a million for ten
    live codes, and still under 1 % with a thousand lamps each holding its 3 codes all year
    round. Six-character codes (30**6 ≈ 7.3e8) make that 900 times likelier — keep 8 unless
    codes are read out often and the global limit is lowered to match.

Groups hold at most ``max_group_size`` (default 8) lamps. Joining moves a lamp out of its old
group. Each outcome lists the lamps whose retained group state changed, for the relay to
re-publish.
"""

from __future__ import annotations

import json
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from touchlamp.config.relay import PairingSettings
from touchlamp.protocol import PairAction, PairRequest, PairResponse
from touchlamp.server.store.base import (
    CodeExistsError,
    Group,
    GroupExistsError,
    GroupFullError,
    PairingCode,
    Store,
    UnknownGroupError,
)

__all__ = [
    "CODE_ALPHABET",
    "PairOutcome",
    "Pairing",
    "bad_request",
    "new_code",
    "new_group_id",
    "normalise_code",
]

CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
_GROUP_ID_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_MAX_REASON = 200  # PairResponse.reason on the wire


def new_code(length: int) -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(length))


def new_group_id() -> str:
    return "g-" + "".join(secrets.choice(_GROUP_ID_ALPHABET) for _ in range(8))


def normalise_code(text: str) -> str:
    """What a person typed → the stored form: upper case, without dashes and spaces."""
    return text.upper().replace("-", "").replace(" ", "")


@dataclass(frozen=True, slots=True)
class PairOutcome:
    response: PairResponse
    # Lamps whose retained group state is now out of date.
    changed: tuple[str, ...] = ()


def bad_request(payload: bytes, reason: str) -> PairResponse:
    """The answer to a request that could not be decoded; names its action if it can."""
    action = PairAction.STATUS
    try:
        data = json.loads(payload)
        if isinstance(data, dict) and data.get("action") in {a.value for a in PairAction}:
            action = PairAction(data["action"])
    except (ValueError, RecursionError):
        pass  # not JSON at all: answer as a status request, the reason says what was wrong
    return _refuse(action, "bad-request", reason)


class Pairing:
    """Not thread-safe (the relay's single worker thread calls it). ``clock`` is seconds since
    the epoch; ``make_code`` and ``make_group_id`` are injectable for tests."""

    def __init__(
        self,
        *,
        store: Store,
        settings: PairingSettings,
        clock: Callable[[], float],
        make_code: Callable[[int], str] = new_code,
        make_group_id: Callable[[], str] = new_group_id,
    ) -> None:
        self._store = store
        self._settings = settings
        self._clock = clock
        self._make_code = make_code
        self._make_group_id = make_group_id
        self._failures: dict[str, deque[float]] = {}
        self._global_failures: deque[float] = deque()
        self._live_codes: dict[str, deque[tuple[str, float]]] = {}

    def handle(self, lamp_id: str, request: PairRequest) -> PairOutcome:
        if self._store.get_lamp(lamp_id) is None:
            return PairOutcome(
                _refuse(
                    request.action,
                    "not-enrolled",
                    f"lamp {lamp_id} is not registered with this relay; ask its operator to "
                    "run `touchlamp relay lamp add`",
                )
            )
        match request.action:
            case PairAction.CREATE:
                return self._create(lamp_id)
            case PairAction.JOIN:
                return self._join(lamp_id, request.code)
            case PairAction.LEAVE:
                return self._leave(lamp_id)
            case PairAction.STATUS:
                group = self._store.group_of(lamp_id)
                return PairOutcome(_answer(PairAction.STATUS, group), changed=(lamp_id,))
            case PairAction.COLOR:
                return self._profile(lamp_id, request)

    # -- create -----------------------------------------------------------------------------
    def _create(self, lamp_id: str) -> PairOutcome:
        now = self._clock()
        live = self._live(lamp_id, now)
        if len(live) >= self._settings.max_codes_per_lamp:
            minutes = _minutes(min(expires for _, expires in live) - now)
            return PairOutcome(
                _refuse(
                    PairAction.CREATE,
                    "busy",
                    f"this lamp already has {len(live)} codes waiting; use one, or ask again "
                    f"in {minutes}",
                )
            )
        changed: tuple[str, ...] = ()
        group = self._store.group_of(lamp_id)
        if group is None:
            group = self._new_group(lamp_id)
            changed = (lamp_id,)
        if len(group.members) >= self._settings.max_group_size:
            return PairOutcome(
                _refuse(
                    PairAction.CREATE,
                    "group-full",
                    f"the group already has {len(group.members)} lamps, the most it can hold",
                )
            )
        expires = now + self._settings.code_ttl_seconds
        code = self._save_new_code(group, lamp_id, expires_ms=round(expires * 1000))
        live.append((code, expires))
        response = PairResponse(
            action=PairAction.CREATE,
            ok=True,
            code=code,
            expires_at=round(expires * 1000),
            group=group.name,
            members=[member.id for member in group.members],
        )
        return PairOutcome(response, changed=changed)

    def _new_group(self, lamp_id: str) -> Group:
        lamp = self._store.get_lamp(lamp_id)
        name = f"{lamp.name if lamp is not None else lamp_id}'s lamps"[:40]
        for attempt in range(5):
            try:
                return self._store.create_group(
                    [lamp_id], name=name, group_id=self._make_group_id()
                )
            except GroupExistsError:
                if attempt == 4:
                    raise
        raise AssertionError("unreachable: the loop returns or raises")

    def _save_new_code(self, group: Group, lamp_id: str, *, expires_ms: int) -> str:
        # A collision among 6.6e11 codes is rare; retrying a few times makes it irrelevant.
        for attempt in range(5):
            code = self._make_code(self._settings.code_length)
            try:
                self._store.save_code(
                    PairingCode(
                        code=code, group_id=group.id, created_by=lamp_id, expires_ms=expires_ms
                    )
                )
            except CodeExistsError:
                if attempt == 4:
                    raise
                continue
            return code
        raise AssertionError("unreachable: the loop returns or raises")

    def _live(self, lamp_id: str, now: float) -> deque[tuple[str, float]]:
        live = self._live_codes.setdefault(lamp_id, deque())
        while live and live[0][1] <= now:
            live.popleft()
        return live

    # -- join -------------------------------------------------------------------------------
    def _join(self, lamp_id: str, typed: str | None) -> PairOutcome:
        if typed is None:
            return PairOutcome(
                _refuse(PairAction.JOIN, "bad-request", "join needs the code the other lamp got")
            )
        now = self._clock()
        refusal = self._locked(lamp_id, now)
        if refusal is not None:
            return PairOutcome(refusal)
        code = normalise_code(typed)
        if len(code) != self._settings.code_length or not set(code) <= set(CODE_ALPHABET):
            return PairOutcome(
                _refuse(
                    PairAction.JOIN,
                    "bad-code",
                    f"a code is {self._settings.code_length} characters from "
                    f"{CODE_ALPHABET}; check for a typo",
                )
            )
        taken = self._store.take_code(code, now_ms=round(now * 1000))
        if taken is None and self._store.get_code(code) is not None:
            # It existed but expired: a slow human, not a guess (a guess learns nothing here).
            return PairOutcome(
                _refuse(
                    PairAction.JOIN,
                    "expired-code",
                    f"code {code} has expired (codes last "
                    f"{_minutes(self._settings.code_ttl_seconds)}); ask for a new one",
                )
            )
        if taken is None:
            self._fail(lamp_id, now)
            return PairOutcome(
                _refuse(
                    PairAction.JOIN,
                    "bad-code",
                    f"no code {code} is waiting: it may be mistyped or used already; check it, "
                    "or ask for a new one",
                )
            )
        return self._join_group(lamp_id, taken)

    def _join_group(self, lamp_id: str, taken: PairingCode) -> PairOutcome:
        old = self._store.group_of(lamp_id)
        if old is not None and old.id == taken.group_id:
            self._store.save_code(taken)  # not used up: someone else may still join with it
            return PairOutcome(
                _refuse(PairAction.JOIN, "already-paired", "this lamp is already in that group")
            )
        try:
            group = self._store.join_group(
                lamp_id, taken.group_id, max_size=self._settings.max_group_size
            )
        except GroupFullError:
            self._store.save_code(taken)  # usable again once someone leaves
            return PairOutcome(
                _refuse(
                    PairAction.JOIN,
                    "group-full",
                    f"that group already has {self._settings.max_group_size} lamps, the most "
                    "it can hold",
                )
            )
        except UnknownGroupError:
            # The group was deleted after the code was made (its last member left).
            return PairOutcome(
                _refuse(
                    PairAction.JOIN,
                    "bad-code",
                    "the group that code belonged to no longer exists; ask for a new code",
                )
            )
        self._failures.pop(lamp_id, None)
        self._forget_code(taken)
        changed = {member.id for member in group.members}
        remaining = self._store.get_group(old.id) if old is not None else None
        if remaining is not None:
            changed.update(member.id for member in remaining.members)
        return PairOutcome(_answer(PairAction.JOIN, group), changed=tuple(sorted(changed)))

    def _forget_code(self, taken: PairingCode) -> None:
        live = self._live_codes.get(taken.created_by)
        if live is not None:
            for entry in [entry for entry in live if entry[0] == taken.code]:
                live.remove(entry)

    def _locked(self, lamp_id: str, now: float) -> PairResponse | None:
        settings = self._settings
        _expire(self._global_failures, now - settings.global_window_seconds)
        if len(self._global_failures) >= settings.global_failures:
            wait = self._global_failures[0] + settings.global_window_seconds - now
            return _refuse(
                PairAction.JOIN,
                "busy",
                "too many wrong codes have been tried on this relay lately; try again in "
                + _minutes(wait),
            )
        failures = self._failures.get(lamp_id)
        if failures is None:
            return None
        _expire(failures, now - settings.lockout_seconds)
        if not failures:
            del self._failures[lamp_id]
            return None
        if len(failures) >= settings.lockout_failures:
            wait = failures[0] + settings.lockout_seconds - now
            return _refuse(
                PairAction.JOIN,
                "locked-out",
                f"{len(failures)} wrong codes from this lamp; try again in {_minutes(wait)}",
            )
        return None

    def _fail(self, lamp_id: str, now: float) -> None:
        self._failures.setdefault(lamp_id, deque()).append(now)
        self._global_failures.append(now)

    # -- leave, colour ----------------------------------------------------------------------
    def _leave(self, lamp_id: str) -> PairOutcome:
        old = self._store.group_of(lamp_id)
        if old is None:
            return PairOutcome(
                _refuse(PairAction.LEAVE, "not-paired", "this lamp is not in a group")
            )
        self._store.leave_group(lamp_id)
        return PairOutcome(
            PairResponse(action=PairAction.LEAVE, ok=True),
            changed=tuple(member.id for member in old.members),
        )

    def _profile(self, lamp_id: str, request: PairRequest) -> PairOutcome:
        if request.color is None and request.name is None:
            return PairOutcome(
                _refuse(PairAction.COLOR, "bad-request", "send a color (#rrggbb) and/or a name")
            )
        self._store.set_profile(lamp_id, color=request.color, name=request.name)
        group = self._store.group_of(lamp_id)
        changed = tuple(m.id for m in group.members) if group is not None else (lamp_id,)
        return PairOutcome(_answer(PairAction.COLOR, group), changed=changed)


def _answer(action: PairAction, group: Group | None) -> PairResponse:
    if group is None:
        return PairResponse(action=action, ok=True, group=None, members=[])
    return PairResponse(
        action=action,
        ok=True,
        group=group.name[:40] or group.id,
        members=[member.id for member in group.members],
    )


def _refuse(action: PairAction, error: str, reason: str) -> PairResponse:
    return PairResponse.model_validate(
        {"action": action, "ok": False, "error": error, "reason": reason[:_MAX_REASON]}
    )


def _expire(times: deque[float], before: float) -> None:
    while times and times[0] <= before:
        times.popleft()


def _minutes(seconds: float) -> str:
    minutes = max(1, int(-(-seconds // 60)))
    return "1 minute" if minutes == 1 else f"{minutes} minutes"
