"""A real lamp's page: the ``web.Board`` of one lamp on its own pins (``touchlamp device run``).

The lamp is drawn from the frame its LED was last given (``FrameTap`` around the lamp's light
hands each frame to the board as it is shown; the agent's status snapshot is replaced only
after the frame, so it would draw the page one frame late, and the last frame of a fade never)
and the page is told after every frame and every change of status. Unlike a simulated lamp, a
real one cannot be touched from its page: a touch is a hand on the lamp, and a hold on it is
what proves its owner is there (device/owner_auth.py). ``/`` sends the browser to the lamp's
own page.
"""

from __future__ import annotations

from collections.abc import Callable

from touchlamp.device.agent import LampAgent
from touchlamp.device.hardware import LightOutput
from touchlamp.device.looks import Rgb
from touchlamp.device.owner_page import OwnerLamp
from touchlamp.device.web_board import LampView, TouchRefusedError, UnknownLampError, Watchers

__all__ = ["FrameTap", "LampBoard"]

_BY_HAND = "a real lamp is touched by hand, not from its page"


class FrameTap:
    """A ``LightOutput`` that shows each frame on ``inner``, then hands it to ``listeners``."""

    def __init__(self, inner: LightOutput) -> None:
        self._inner = inner
        self.listeners: list[Callable[[Rgb], None]] = []

    def show(self, rgb: Rgb) -> None:
        self._inner.show(rgb)
        for listener in self.listeners:
            listener(rgb)

    def close(self) -> None:
        self._inner.close()


class LampBoard:
    """One real lamp behind the page. Call ``changed`` with each frame the lamp shows."""

    def __init__(self, *, agent: LampAgent, owner: OwnerLamp) -> None:
        self._agent = agent
        self._owner = owner
        self._watchers = Watchers()
        self._revision = 0
        self._led = agent.status().led
        agent.add_listener(self._status_news)

    def changed(self, rgb: Rgb) -> None:
        """The lamp showed ``rgb`` (called from its thread)."""
        self._led = (rgb.r, rgb.g, rgb.b)
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
                led=self._led,
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
