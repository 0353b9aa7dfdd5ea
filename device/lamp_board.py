"""A real lamp's page: the ``web.Board`` of one lamp on its own pins (``touchlamp device run``).

The lamp is drawn from its agent's status (``LampStatus.led``, the frame its LED was last given)
and the page is told after every frame (the ``NotifyingLight`` around the lamp's light, as in
the simulator) and every change of status. Unlike a simulated lamp, a real one cannot be
touched from its page: a touch is a hand on the lamp, and a hold on it is what proves its
owner is there (device/owner_auth.py). ``/`` sends the browser to the lamp's own page.
"""

from __future__ import annotations

from collections.abc import Callable

from touchlamp.device.agent import LampAgent
from touchlamp.device.owner_page import OwnerLamp
from touchlamp.device.web import LampView, TouchRefusedError, UnknownLampError, Watchers

__all__ = ["LampBoard"]

_BY_HAND = "a real lamp is touched by hand, not from its page"


class LampBoard:
    """One real lamp behind the page. Call ``changed`` after each frame the lamp shows."""

    def __init__(self, *, agent: LampAgent, owner: OwnerLamp) -> None:
        self._agent = agent
        self._owner = owner
        self._watchers = Watchers()
        self._revision = 0
        agent.add_listener(self._status_news)

    def changed(self) -> None:
        """The lamp showed a frame (called from its thread)."""
        self._watchers.notify()

    def _status_news(self, _news: object) -> None:  # the agent's thread
        self._revision += 1
        self._watchers.notify()

    # ---- web.Board ----

    def views(self) -> list[LampView]:
        status = self._agent.status()
        return [
            LampView(
                id=status.lamp_id,
                name=status.name,
                online=status.online,
                led=status.led,
                color=status.color,
                gamma=self._agent.settings.looks.gamma,
                revision=self._revision,
            )
        ]

    def press(self, lamp_id: str) -> None:
        self._check(lamp_id)
        raise TouchRefusedError(_BY_HAND)

    def release(self, lamp_id: str) -> None:
        self._check(lamp_id)
        raise TouchRefusedError(_BY_HAND)

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        return self._watchers.watch(callback)

    def owner(self, lamp_id: str) -> OwnerLamp:
        self._check(lamp_id)
        return self._owner

    @property
    def home(self) -> str | None:
        return f"/lamp/{self._agent.lamp_id}/"

    def _check(self, lamp_id: str) -> None:
        if lamp_id != self._agent.lamp_id:
            raise UnknownLampError(lamp_id)
