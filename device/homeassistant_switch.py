"""The lamp's Home Assistant bridge, replaced when its owner changes the home broker's settings.

The owner sets ``homeassistant.*`` on the lamp's page or with ``device set``
(device/owner_settings.py), and the change applies at once: the running bridge is stopped
(it says "offline" on its way out) and a new one is made from the new settings by
``home_assistant_for``, which also removes the lamp's discovery configs from the home broker
when the integration is now disabled. Settings whose ``homeassistant`` group did not change
leave the bridge alone.
"""

from __future__ import annotations

import threading

from touchlamp.config.device import DeviceSettings
from touchlamp.device.homeassistant import HomeAssistantBridge, LampHandle, home_assistant_for

__all__ = ["HomeAssistantSwitch"]


class HomeAssistantSwitch:
    """Holds the lamp's bridge (``None`` when Home Assistant is off); ``apply`` from any thread."""

    def __init__(
        self, settings: DeviceSettings, lamp: LampHandle, *, page_port: int | None = None
    ) -> None:
        self._lamp = lamp
        self._page_port = page_port
        self._home = settings.homeassistant
        self._bridge = home_assistant_for(settings, lamp, page_port=page_port)
        self._started = False
        self._lock = threading.Lock()

    @property
    def bridge(self) -> HomeAssistantBridge | None:
        return self._bridge

    def start(self) -> None:
        with self._lock:
            self._started = True
            if self._bridge is not None:
                self._bridge.start()

    def stop(self) -> None:
        with self._lock:
            self._started = False
            if self._bridge is not None:
                self._bridge.stop()

    def apply(self, settings: DeviceSettings) -> None:
        """Follow ``settings``: a new bridge when the ``homeassistant`` group changed."""
        with self._lock:
            if settings.homeassistant == self._home:
                return
            self._home = settings.homeassistant
            if self._bridge is not None:
                self._bridge.stop()
            self._bridge = home_assistant_for(settings, self._lamp, page_port=self._page_port)
            if self._started and self._bridge is not None:
                self._bridge.start()
