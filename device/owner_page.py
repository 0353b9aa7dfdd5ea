"""The lamp's own page's API: what its owner sees and changes, without a terminal.

``OwnerLamp`` answers the requests under ``/api/lamps/<id>/`` that device/web_routes.py hands it
(``handle``); the page itself is ``device/static/owner.html``. Everyone may look (``GET
…/owner``: the lamp's status in words, its group, its settings and where each comes from);
every change needs the owner's session (device/owner_auth.py), else 403:

    GET  …/owner                      status, settings, whether claimed / signed in
    GET  …/doctor                     when not connected: why, and the fix
    POST …/claim     {"password"}     waits for a hold on the lamp (30 s), then signs in
    POST …/login     {"password"}     signs in (rate limited)
    POST …/logout
    POST …/settings  {"changes": {KEY: VALUE}}     all or nothing (device/owner_settings.py)
    POST …/pair/new                   a code and its expiry
    POST …/pair/join {"code"}
    POST …/pair/leave {"confirm": true}
    POST …/quiet     {"on": bool}     quiet now, on top of quiet hours

No secret ever goes to the browser: not the broker password, not the owner's password or its
hash; the session token only in an HttpOnly, SameSite=Strict cookie.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Protocol

from touchlamp.config.lamp_file import LampFileError
from touchlamp.device.agent import LampAgent
from touchlamp.device.link_api import LinkError
from touchlamp.device.owner_auth import AuthError, OwnerAuth, TooManyAttemptsError
from touchlamp.device.owner_settings import OwnerSettingError, OwnerSettings
from touchlamp.device.status import LampStatus
from touchlamp.device.unenrolled import Enroller, EnrolmentRefusedError
from touchlamp.protocol import PairAction, PairRequest, PairResponse

__all__ = ["OwnerAnswer", "OwnerLamp", "OwnerRequest", "PairingLink"]

_log = logging.getLogger(__name__)

_PAIR_TIMEOUT = 10.0
_DOCTOR_TIMEOUT = 3.0
_REFUSED = (
    "only the lamp's owner may change it: sign in with the lamp's password "
    "(or claim the lamp by holding it)"
)


class PairingLink(Protocol):
    def request(self, request: PairRequest, *, timeout: float = 10.0) -> PairResponse: ...


@dataclass(frozen=True, slots=True)
class OwnerRequest:
    """What web_routes.py passes on: ``path`` is what follows ``/api/lamps/<id>/``."""

    method: str
    path: tuple[str, ...]
    body: Mapping[str, Any]
    session: str | None


@dataclass(frozen=True, slots=True)
class OwnerAnswer:
    status: HTTPStatus
    document: Mapping[str, Any]
    session: str | None = None
    """A new session token to set as the cookie; ``""`` clears the cookie."""
    retry_after: float | None = None


def _error(status: HTTPStatus, text: str, **extra: object) -> OwnerAnswer:
    return OwnerAnswer(status, {"error": text, **extra})


class OwnerLamp:
    """One lamp's owner API (one per lamp served, simulated or real)."""

    def __init__(
        self,
        *,
        agent: LampAgent,
        owner: OwnerSettings,
        link: PairingLink,
        auth: OwnerAuth,
        broker: tuple[str, int],
        wall_clock: Callable[[], float] = time.time,
        enroller: Enroller | None = None,
    ) -> None:
        """``enroller``: the lamp has no token yet, and the page offers to paste one."""
        self._agent = agent
        self._enroller = enroller
        self._owner = owner
        self._link = link
        self._auth = auth
        self._broker = broker
        self._wall_clock = wall_clock

    @property
    def lamp_id(self) -> str:
        return self._agent.lamp_id

    @property
    def cookie_name(self) -> str:
        """Each lamp its own cookie: the simulator serves several lamps on one address."""
        return f"touchlamp-{self.lamp_id}"

    def handle(self, request: OwnerRequest) -> OwnerAnswer:
        key = (request.method, request.path)
        read = {("GET", ("owner",)): self._show, ("GET", ("doctor",)): self._doctor}
        sign = {
            ("POST", ("claim",)): self._claim,
            ("POST", ("login",)): self._login,
            ("POST", ("logout",)): self._logout,
        }
        change = {
            ("POST", ("settings",)): self._settings,
            ("POST", ("pair", "new")): self._pair_new,
            ("POST", ("pair", "join")): self._pair_join,
            ("POST", ("pair", "leave")): self._pair_leave,
            ("POST", ("quiet",)): self._quiet,
            ("POST", ("enrol",)): self._enrol,
        }
        if key in read:
            return read[key](request)
        if key in sign:
            return sign[key](request)
        if key in change:
            if not self._auth.signed_in(request.session):
                return _error(HTTPStatus.FORBIDDEN, _REFUSED)
            return change[key](request)
        return _error(HTTPStatus.NOT_FOUND, f"no {'/'.join(request.path)!r} for {request.method}")

    # ---- looking ----

    def _show(self, request: OwnerRequest) -> OwnerAnswer:
        status = self._agent.status()
        try:
            values = [value.to_json() for value in self._owner.values()]
        except LampFileError as error:
            return _error(HTTPStatus.INTERNAL_SERVER_ERROR, str(error))
        return OwnerAnswer(
            HTTPStatus.OK,
            {
                "lamp": _status_json(status),
                "settings": values,
                "claimed": self._auth.claimed,
                "signed_in": self._auth.signed_in(request.session),
                "claim_waiting": self._auth.claim_waiting,
                "reset_hold_seconds": self._auth.reset_hold_seconds,
                "enrolled": self._enroller is None,
                "now": self._wall_clock(),
            },
        )

    def _doctor(self, _request: OwnerRequest) -> OwnerAnswer:
        if self._agent.status().online:
            return OwnerAnswer(HTTPStatus.OK, {"connected": True, "findings": []})
        # doctor's own check, imported only when asked: it is not a lamp's everyday code.
        from touchlamp.doctor.findings import Outcome  # noqa: PLC0415
        from touchlamp.doctor.network import check_reachable  # noqa: PLC0415

        host, port = self._broker
        found = check_reachable(host, port, _DOCTOR_TIMEOUT, "TOUCHLAMP_DEVICE_MQTT")
        if found.outcome is Outcome.OK:
            text = f"{found.text}, but the lamp is not connected to it"
            fix = (
                "the broker may refuse the lamp's login: run `sudo touchlamp doctor` on the lamp "
                "(re-enroll it if the login is refused)"
            )
        else:
            text, fix = found.text, found.fix or ""
        return OwnerAnswer(
            HTTPStatus.OK, {"connected": False, "findings": [{"text": text, "fix": fix}]}
        )

    # ---- signing in ----

    def _claim(self, request: OwnerRequest) -> OwnerAnswer:
        password = request.body.get("password")
        if not isinstance(password, str):
            return _error(HTTPStatus.BAD_REQUEST, 'send the password to set: {"password": …}')
        try:
            claim = self._auth.begin_claim(password)
        except AuthError as error:
            return _error(HTTPStatus.BAD_REQUEST, str(error), field="password")
        self._agent.await_claim(self._auth.held)
        try:
            result = self._auth.wait_claim(claim)
        except AuthError as error:
            return _error(HTTPStatus.CONFLICT, str(error))
        finally:
            self._agent.await_claim(None)
        return OwnerAnswer(HTTPStatus.OK, {"signed_in": True}, session=result.session)

    def _login(self, request: OwnerRequest) -> OwnerAnswer:
        password = request.body.get("password")
        if not isinstance(password, str):
            return _error(HTTPStatus.BAD_REQUEST, 'send the password: {"password": …}')
        try:
            session = self._auth.login(password)
        except TooManyAttemptsError as error:
            return OwnerAnswer(
                HTTPStatus.TOO_MANY_REQUESTS, {"error": str(error)}, retry_after=error.retry_after
            )
        except AuthError as error:
            return _error(HTTPStatus.UNAUTHORIZED, str(error), field="password")
        return OwnerAnswer(HTTPStatus.OK, {"signed_in": True}, session=session)

    def _logout(self, request: OwnerRequest) -> OwnerAnswer:
        self._auth.logout(request.session)
        return OwnerAnswer(HTTPStatus.OK, {"signed_in": False}, session="")

    # ---- changing ----

    def _settings(self, request: OwnerRequest) -> OwnerAnswer:
        changes = request.body.get("changes")
        if not isinstance(changes, dict) or not changes:
            return _error(HTTPStatus.BAD_REQUEST, 'send {"changes": {KEY: VALUE}}')
        try:
            values = self._owner.change(changes)
        except OwnerSettingError as error:
            return _error(HTTPStatus.BAD_REQUEST, str(error), field=error.key)
        except LampFileError as error:
            return _error(HTTPStatus.INTERNAL_SERVER_ERROR, str(error))
        return OwnerAnswer(HTTPStatus.OK, {"settings": [value.to_json() for value in values]})

    def _pair_new(self, _request: OwnerRequest) -> OwnerAnswer:
        answer = self._pair(PairRequest(action=PairAction.CREATE))
        if isinstance(answer, OwnerAnswer):
            return answer
        return OwnerAnswer(
            HTTPStatus.OK,
            {
                "code": answer.code,
                "expires_at": None if answer.expires_at is None else answer.expires_at / 1000,
            },
        )

    def _pair_join(self, request: OwnerRequest) -> OwnerAnswer:
        code = request.body.get("code")
        code = code.strip().replace(" ", "") if isinstance(code, str) else ""
        try:
            pair_request = PairRequest(action=PairAction.JOIN, code=code)
        except ValueError:
            return _error(
                HTTPStatus.BAD_REQUEST,
                f"{code!r} is not a pairing code: it is 4-16 letters and digits, "
                "as the other lamp's page shows it",
                field="code",
            )
        answer = self._pair(pair_request)
        if isinstance(answer, OwnerAnswer):
            return answer
        return OwnerAnswer(HTTPStatus.OK, {"group": answer.group, "members": answer.members})

    def _pair_leave(self, request: OwnerRequest) -> OwnerAnswer:
        if request.body.get("confirm") is not True:
            return _error(
                HTTPStatus.BAD_REQUEST,
                'leaving the group needs {"confirm": true}: the lamp stops lighting up for '
                "the others until it is paired again",
            )
        answer = self._pair(PairRequest(action=PairAction.LEAVE))
        if isinstance(answer, OwnerAnswer):
            return answer
        return OwnerAnswer(HTTPStatus.OK, {"left": True})

    def _pair(self, request: PairRequest) -> PairResponse | OwnerAnswer:
        try:
            response = self._link.request(request, timeout=_PAIR_TIMEOUT)
        except LinkError as error:
            return _error(HTTPStatus.SERVICE_UNAVAILABLE, str(error))
        if not response.ok:
            reason = response.reason or "the relay refused without saying why"
            return _error(HTTPStatus.CONFLICT, reason, code=response.error)
        return response

    def _enrol(self, request: OwnerRequest) -> OwnerAnswer:
        if self._enroller is None:
            return _error(
                HTTPStatus.CONFLICT,
                f"this lamp is enrolled already (as {self.lamp_id}); to give it another "
                "identity, run `touchlamp device enroll TOKEN` on the lamp",
            )
        token = request.body.get("token")
        if not isinstance(token, str) or not token.strip():
            return _error(
                HTTPStatus.BAD_REQUEST,
                'send {"token": "tl1…"}: the token `touchlamp relay lamp add` printed',
                field="token",
            )
        try:
            enrollment = self._enroller.enrol(token)
        except EnrolmentRefusedError as error:
            return _error(HTTPStatus.BAD_REQUEST, str(error), field="token")
        return OwnerAnswer(
            HTTPStatus.OK,
            {
                "enrolled": enrollment.lamp,
                "broker": f"{enrollment.host}:{enrollment.port}",
                "page": f"/lamp/{enrollment.lamp}/",
            },
        )

    def _quiet(self, request: OwnerRequest) -> OwnerAnswer:
        on = request.body.get("on")
        if not isinstance(on, bool):
            return _error(HTTPStatus.BAD_REQUEST, 'send {"on": true} or {"on": false}')
        self._agent.set_quiet_now(on)
        return OwnerAnswer(HTTPStatus.OK, {"quiet_now": on})


def _status_json(status: LampStatus) -> dict[str, Any]:
    names = {member.id: member.name for member in status.members}
    glow = status.last_glow
    return {
        "id": status.lamp_id,
        "name": status.name,
        "color": status.color,
        "online": status.online,
        "members": [
            {"id": m.id, "name": m.name, "color": m.color, "online": m.online}
            for m in status.members
        ],
        "last_glow": None
        if glow is None
        else {
            "from": glow.from_lamp,
            "from_name": names.get(glow.from_lamp, glow.from_lamp),
            "color": glow.color,
            "mutual": glow.mutual,
            "shown": glow.shown,
            "at": glow.at,
            "at_text": dt.datetime.fromtimestamp(glow.at, dt.UTC).isoformat(),
        },
        "missed_touches": status.missed_touches,
        "quiet": status.quiet,
        "quiet_now": status.quiet_now,
    }
