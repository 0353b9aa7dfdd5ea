"""The lamp's Home Assistant bridge, replaced when its owner changes the home broker's settings.

The owner sets ``homeassistant.*`` on the lamp's page or with ``device set``
(device/owner_settings.py), and the change applies at once: the running bridge is stopped
(it says "offline" on its way out) and a new one is made from the new settings by
``home_assistant_for``, which also removes the lamp's discovery configs from the home broker
when the integration is now disabled. Settings whose ``homeassistant`` group did not change
leave the bridge alone.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from touchlamp.config.device import DeviceSettings, HomeAssistantSettings
from touchlamp.device.homeassistant import HomeAssistantBridge, LampHandle
from touchlamp.device.homeassistant_client import HomeAssistantError
from touchlamp.device.homeassistant_removal import (
    RECORD_FILE,
    read_record,
    remove_from_home_assistant,
)
from touchlamp.device.homeassistant_settings import default_configuration_url

__all__ = ["HomeAssistantSwitch", "home_assistant_for"]

logger = logging.getLogger(__name__)


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


def home_assistant_for(
    settings: DeviceSettings, lamp: LampHandle, *, page_port: int | None = None
) -> HomeAssistantBridge | None:
    """The bridge the lamp's settings ask for, not started; ``None`` when there is none.

    ``homeassistant.enabled=false`` with a host: the lamp's entities are removed from that
    broker in the background (once: the record goes with them) and no bridge runs.
    """
    home = settings.homeassistant
    if home.host is None:
        if read_record(settings.state_dir):
            logger.warning(
                "lamp %s: its Home Assistant entities may still be on a home broker (%s lists "
                "them); to remove them, set TOUCHLAMP_DEVICE_HOMEASSISTANT__HOST (and the "
                "login) with TOUCHLAMP_DEVICE_HOMEASSISTANT__ENABLED=false",
                settings.lamp_id,
                settings.state_dir / RECORD_FILE,
            )
        return None
    if not home.enabled:
        if read_record(settings.state_dir):
            threading.Thread(
                target=_remove_quietly,
                args=(home, settings.lamp_id, settings.state_dir),
                name=f"homeassistant-remove-{settings.lamp_id}",
                daemon=True,
            ).start()
        return None
    url = home.configuration_url
    if url is None and page_port:
        url = default_configuration_url(page_port)
    return HomeAssistantBridge(home, lamp, state_dir=settings.state_dir, configuration_url=url)


def _remove_quietly(home: HomeAssistantSettings, lamp_id: str, state_dir: Path) -> None:
    try:
        cleared = remove_from_home_assistant(home, lamp_id=lamp_id, state_dir=state_dir)
    except HomeAssistantError as error:
        logger.warning("lamp %s: Home Assistant is disabled, but %s", lamp_id, error)
    else:
        logger.info(
            "lamp %s: Home Assistant disabled; removed its entities (%d retained topics cleared)",
            lamp_id,
            cleared,
        )
