"""Who may change a lamp from its page: its owner, who proved it by holding the lamp.

Anyone on the home network may look at a lamp's page; only its owner may change anything.
The owner is whoever *claimed* the lamp: they chose a password on the page and then, within
``CLAIM_SECONDS``, held the lamp's own touch sensor (so a neighbour on the Wi-Fi, who cannot
touch the lamp, cannot claim it). The password is stored hashed with scrypt
(``hashlib.scrypt``, salted, in ``STATE_DIR/owner-password``, mode 0600); nothing secret is
ever sent back to the browser, only a random session token in an HttpOnly, SameSite=Strict
cookie.

Forgot the password: claim again, with a hold of at least ``RESET_HOLD_SECONDS``; that
replaces the password and ends every session. A hold shorter than that does not replace the
password of a claimed lamp, so a short touch by someone else while a stranger's claim waits
does not hand the lamp over.

Login attempts are rate limited per lamp (``LoginThrottle``): after ``max_failures`` wrong
passwords within ``window_seconds`` every attempt is refused until the oldest failure is
``window_seconds`` old. Per lamp, not per address: addresses on a LAN are the attacker's to
choose; the cost is that someone guessing can keep the owner out for a minute at a time.

Pure logic with an injected clock (``now``: monotonic seconds) and the state directory; the
web server calls it from its threads, so every method takes the lock.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from touchlamp.errors import TouchlampError
from touchlamp.files import write_atomically

__all__ = [
    "CLAIM_SECONDS",
    "OWNER_FILE",
    "RESET_HOLD_SECONDS",
    "AuthError",
    "Claim",
    "ClaimResult",
    "LoginThrottle",
    "OwnerAuth",
    "TooManyAttemptsError",
]

OWNER_FILE = "owner-password"
CLAIM_SECONDS = 30.0
"""How long after asking to claim the lamp its hold is awaited."""
RESET_HOLD_SECONDS = 8.0
"""How long a hold must last to claim a lamp that already has an owner (forgot password)."""
MIN_PASSWORD = 8
MAX_PASSWORD = 200
SESSION_SECONDS = 30 * 24 * 3600.0

# scrypt's cost: 16 MiB and ~0.1 s on a Raspberry Pi 3 per check (RFC 7914's interactive
# figures); the throttle, not the cost, is what stops guessing over the network.
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
_KEY_BYTES = 32


class AuthError(TouchlampError, ValueError):
    """A refused claim or login; the message says why and what to do."""


class TooManyAttemptsError(AuthError):
    """Too many wrong passwords lately; ``retry_after`` is in seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(
            f"too many wrong passwords: wait {retry_after:.0f} s, or if you forgot it, "
            "claim the lamp again with a long hold"
        )
        self.retry_after = retry_after


class LoginThrottle:
    """At most ``max_failures`` failed logins in any ``window_seconds``."""

    def __init__(self, *, max_failures: int = 5, window_seconds: float = 60.0) -> None:
        self._max = max_failures
        self._window = window_seconds
        self._failures: deque[float] = deque()

    def check(self, now: float) -> None:
        """``TooManyAttemptsError`` while the limit is reached."""
        while self._failures and now - self._failures[0] >= self._window:
            self._failures.popleft()
        if len(self._failures) >= self._max:
            raise TooManyAttemptsError(self._window - (now - self._failures[0]))

    def failed(self, now: float) -> None:
        self._failures.append(now)


@dataclass(frozen=True, slots=True)
class ClaimResult:
    """A claim confirmed by a hold: the new session's token."""

    session: str


@dataclass(slots=True)
class Claim:
    """A claim waiting for the lamp's hold (``OwnerAuth.begin_claim``)."""

    password_hash: dict[str, object]
    deadline: float
    done: threading.Event
    result: ClaimResult | None = None
    short_holds: int = 0


class OwnerAuth:
    """The owner's password, sessions and claims for the lamp whose state is in ``state_dir``."""

    def __init__(
        self,
        *,
        state_dir: Path,
        now: Callable[[], float],
        claim_seconds: float = CLAIM_SECONDS,
        reset_hold_seconds: float = RESET_HOLD_SECONDS,
        throttle: LoginThrottle | None = None,
    ) -> None:
        self._path = state_dir / OWNER_FILE
        self._now = now
        self._claim_seconds = claim_seconds
        self._reset_hold = reset_hold_seconds
        self._throttle = throttle or LoginThrottle()
        self._lock = threading.Lock()
        self._sessions: dict[str, float] = {}
        self._claim: Claim | None = None

    @property
    def claimed(self) -> bool:
        """Whether the lamp has an owner (a password)."""
        return self._path.exists()

    @property
    def claim_waiting(self) -> bool:
        with self._lock:
            return self._claim is not None and self._now() < self._claim.deadline

    @property
    def reset_hold_seconds(self) -> float:
        return self._reset_hold

    # ---- claims ----

    def begin_claim(self, password: str) -> Claim:
        """Start waiting for the hold that confirms ``password`` as the owner's.

        The caller then waits with ``wait_claim``; the lamp's hold arrives via ``held``.
        """
        _check_password(password)
        hashed = _hash(password)  # before the lock: scrypt takes a while
        with self._lock:
            now = self._now()
            if self._claim is not None and now < self._claim.deadline:
                raise AuthError(
                    "someone is claiming this lamp right now: wait half a minute and try again"
                )
            self._claim = Claim(
                password_hash=hashed,
                deadline=now + self._claim_seconds,
                done=threading.Event(),
            )
            return self._claim

    def held(self, seconds: float) -> bool:
        """The lamp was held for ``seconds`` while a claim waits: confirm it if long enough.

        Returns whether the hold confirmed a claim.
        """
        with self._lock:
            claim = self._claim
            if claim is None or claim.done.is_set() or self._now() >= claim.deadline:
                return False
            if self.claimed and seconds < self._reset_hold:
                claim.short_holds += 1
                return False
            _write_private(self._path, json.dumps(claim.password_hash) + "\n")
            self._sessions.clear()  # a new owner (or a new password): old sessions end
            claim.result = ClaimResult(session=self._new_session())
            claim.done.set()
            self._claim = None
            return True

    def wait_claim(self, claim: Claim) -> ClaimResult:
        """Block until ``claim`` is confirmed (its result) or its time is up (``AuthError``)."""
        remaining = claim.deadline - self._now()
        if remaining > 0:
            claim.done.wait(remaining)
        with self._lock:
            if self._claim is claim:
                self._claim = None
        if claim.result is not None:
            return claim.result
        if claim.short_holds:
            raise AuthError(
                f"the lamp already has an owner: to set a new password, hold the lamp for "
                f"{self._reset_hold:g} seconds or more (a shorter hold does not count)"
            )
        raise AuthError(
            f"the lamp was not held within {self._claim_seconds:g} seconds: try again, and "
            "hold the lamp until it stops changing"
        )

    # ---- logins and sessions ----

    def login(self, password: str) -> str:
        """A new session's token, or ``AuthError`` (``TooManyAttemptsError`` when throttled)."""
        with self._lock:
            self._throttle.check(self._now())
        stored = self._stored()
        if stored is None:
            raise AuthError("this lamp has no owner yet: claim it first")
        if not _verify(password, stored):
            with self._lock:
                self._throttle.failed(self._now())
            raise AuthError("wrong password")
        with self._lock:
            return self._new_session()

    def signed_in(self, token: str | None) -> bool:
        if not token:
            return False
        with self._lock:
            expiry = self._sessions.get(token)
            if expiry is None:
                return False
            if self._now() >= expiry:
                del self._sessions[token]
                return False
            return True

    def logout(self, token: str | None) -> None:
        with self._lock:
            if token:
                self._sessions.pop(token, None)

    def _new_session(self) -> str:
        token = secrets.token_urlsafe(32)
        self._sessions[token] = self._now() + SESSION_SECONDS
        return token

    def _stored(self) -> dict[str, object] | None:
        try:
            data = json.loads(self._path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            raise AuthError(
                f"cannot read the owner's password in {self._path} ({error}); claim the lamp "
                "again with a long hold to set a new one"
            ) from None
        return data if isinstance(data, dict) else None


def _check_password(password: str) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise AuthError(
            f"choose a password of {MIN_PASSWORD} to {MAX_PASSWORD} characters "
            f"(this one has {len(password)})"
        )


def _hash(password: str) -> dict[str, object]:
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode(), salt=salt, dklen=_KEY_BYTES, **_SCRYPT)
    return {"scheme": "scrypt", **_SCRYPT, "salt": salt.hex(), "hash": key.hex()}


def _verify(password: str, stored: dict[str, object]) -> bool:
    try:
        salt = bytes.fromhex(str(stored["salt"]))
        expected = bytes.fromhex(str(stored["hash"]))
        n, r, p = (int(str(stored[name])) for name in ("n", "r", "p"))
    except (KeyError, ValueError):
        return False
    key = hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, dklen=len(expected), maxmem=2**26
    )
    return hmac.compare_digest(key, expected)


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, text, mode=0o600)
