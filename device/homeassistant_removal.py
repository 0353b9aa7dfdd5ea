"""Taking the lamp out of Home Assistant: the record of what it published, and its removal.

Which discovery configs and states this lamp published on the home broker is kept in
``state_dir/homeassistant.json`` (the bridge, device/homeassistant.py, writes it), so that a
member who left the group, a disabled integration (``enabled=false``) and ``touchlamp device
uninstall`` remove exactly those (empty retained messages).
"""

from __future__ import annotations

import contextlib
import json
import logging
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from touchlamp.config.common import SettingsError, load_settings
from touchlamp.config.device import DeviceSettings, HomeAssistantSettings
from touchlamp.device.homeassistant_client import (
    HomeAssistantError,
    close_client,
    home_client,
    home_tls_context,
)
from touchlamp.device.homeassistant_discovery import HomeTopics
from touchlamp.files import write_atomically

__all__ = [
    "RECORD_FILE",
    "prepare_uninstall",
    "read_record",
    "remove_from_home_assistant",
    "write_record",
]

logger = logging.getLogger(__name__)

RECORD_FILE = "homeassistant.json"
"""The retained topics this lamp published on the home broker (inside its state directory)."""


def read_record(state_dir: Path) -> list[str]:
    path = state_dir / RECORD_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as error:
        logger.warning("cannot read %s (%s); starting a new record", path, error)
        return []
    topics = data.get("retained") if isinstance(data, dict) else None
    if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
        logger.warning("%s is not a touchlamp record; starting a new one", path)
        return []
    return sorted(topics)


def write_record(state_dir: Path, topics: list[str]) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    document = json.dumps({"retained": topics}, indent=1) + "\n"
    write_atomically(state_dir / RECORD_FILE, document, mode=0o644)


def remove_from_home_assistant(
    settings: HomeAssistantSettings, *, lamp_id: str, state_dir: Path, timeout: float = 10.0
) -> int:
    """Delete the lamp's discovery configs and states on the home broker (empty retained
    messages), then its record. Returns how many topics were cleared.

    Raises ``HomeAssistantError`` (saying what to do) when the broker cannot be reached or
    refuses the login within ``timeout``; the record is kept then, for another try.
    """
    if settings.host is None:
        raise HomeAssistantError(
            "no home broker is configured: set TOUCHLAMP_DEVICE_HOMEASSISTANT__HOST"
        )
    topics = HomeTopics(
        lamp_id, topic_root=settings.topic_root, discovery_prefix=settings.discovery_prefix
    )
    fixed = [
        *topics.fixed_configs,
        topics.availability,
        topics.quiet,
        topics.missed_touches,
    ]
    clear = sorted({*read_record(state_dir), *fixed})
    where = f"{settings.host}:{settings.effective_port}"
    done = threading.Event()
    outcome: list[str] = []
    client = home_client(
        settings,
        f"touchlamp-{lamp_id}-remove",
        tls=home_tls_context(settings) if settings.tls else None,
        connect_timeout=min(timeout, settings.connect_timeout_seconds),
    )

    def on_connect(
        _client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        _properties: object,
    ) -> None:
        if reason.is_failure:
            outcome.append(f"the home broker {where} refused the connection ({reason})")
        done.set()

    def on_connect_fail(_client: mqtt.Client, _userdata: object) -> None:
        outcome.append(f"cannot reach the home broker {where}")
        done.set()

    client.on_connect = on_connect
    client.on_connect_fail = on_connect_fail
    deadline = time.monotonic() + timeout
    try:
        client.connect_async(settings.host, settings.effective_port, settings.keepalive_seconds)
        client.loop_start()
        if not done.wait(timeout) and not outcome:
            outcome.append(f"the home broker {where} did not answer within {timeout:g} s")
        if outcome:
            raise HomeAssistantError(
                f"{outcome[0]}; the lamp's Home Assistant entities are still there. Check "
                "TOUCHLAMP_DEVICE_HOMEASSISTANT__HOST/__PORT/__USERNAME/__PASSWORD and try "
                "again, or delete the device in Home Assistant (Settings → Devices)"
            )
        infos = [client.publish(topic, b"", qos=1, retain=True) for topic in clear]
        for info in infos:
            remaining = max(0.0, deadline - time.monotonic())
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                raise HomeAssistantError(f"cannot publish to the home broker {where} ({info.rc})")
            info.wait_for_publish(timeout=remaining)
            if not info.is_published():
                raise HomeAssistantError(
                    f"the home broker {where} did not acknowledge the removal within "
                    f"{timeout:g} s; try again"
                )
    except (OSError, ssl.SSLError) as error:
        raise HomeAssistantError(f"cannot reach the home broker {where} ({error})") from error
    finally:
        close_client(client)
    with contextlib.suppress(FileNotFoundError):
        (state_dir / RECORD_FILE).unlink()
    return len(clear)


def prepare_uninstall(settings_file: Path, *, out: TextIO) -> Callable[[bool], None] | None:
    """Read the lamp's settings before ``device uninstall`` removes them; the function returned
    (``None``: nothing to do) then removes the lamp's entities from Home Assistant (``dry_run``
    only says so). A broker that cannot be reached is reported, and the uninstall goes on."""
    if not settings_file.exists():
        return None
    try:
        settings = load_settings(DeviceSettings, env_file=settings_file)
    except SettingsError as error:
        print(f"Home Assistant: cannot read {settings_file} ({error}); skipped", file=out)
        return None
    home = settings.homeassistant
    if home.host is None:
        return None
    where = f"{home.host}:{home.effective_port}"

    def remove(dry_run: bool) -> None:
        if dry_run:
            print(f"would remove the lamp's Home Assistant entities from {where}", file=out)
            return
        try:
            cleared = remove_from_home_assistant(
                home, lamp_id=settings.lamp_id, state_dir=settings.state_dir
            )
        except HomeAssistantError as error:
            print(f"Home Assistant: {error}", file=out)
            return
        print(
            f"removed the lamp's Home Assistant entities from {where} ({cleared} topics)", file=out
        )

    return remove
