"""Simulated lamps: the very same agent, core and link as on a Raspberry Pi, on mock pins.

Each ``SimulatedLamp`` has its own gpiozero ``MockFactory`` (PWM-capable mock pins), so two lamps
can both use GPIO17 for touch and GPIO12/13/19 for their LED without meeting; its own MQTT
connection (``LampLink``) with its own credentials and state directory; and its own agent
thread. Pressing a lamp drives its touch pin as a TTP223 would (high while touched; low for a
button); what a lamp shows is read back from its LED pins, exactly what an LED would get.

``Simulator`` is the ``web.Board`` behind the page: it lists the lamps, presses and releases
them, and tells watchers after any lamp showed a frame (the ``NotifyingLight`` around each
lamp's light output), so the page is pushed changes and nothing polls.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from touchlamp.config.device import DeviceSettings
from touchlamp.device.agent import AgentLink, LampAgent
from touchlamp.device.clock import Clock, SystemClock
from touchlamp.device.control import ControlServer
from touchlamp.device.hardware import (
    LightOutput,
    PinFactory,
    mock_pin_factory,
    open_light_output,
    open_touch_input,
)
from touchlamp.device.homeassistant import HomeAssistantBridge
from touchlamp.device.homeassistant_switch import HomeAssistantSwitch
from touchlamp.device.link import LampLink
from touchlamp.device.link_api import LinkSink
from touchlamp.device.looks import Rgb
from touchlamp.device.owner_auth import OwnerAuth
from touchlamp.device.owner_page import OwnerLamp
from touchlamp.device.owner_settings import OwnerSettings, describe_running, with_lamp_file
from touchlamp.device.simulated import mark_simulated
from touchlamp.device.web_board import LampView, UnknownLampError, Watchers
from touchlamp.errors import ConfigurationError
from touchlamp.lifecycle import StopsOnExit

__all__ = ["NotifyingLight", "SimulatedLamp", "Simulator", "SimulatorError"]

_log = logging.getLogger(__name__)


class SimulatorError(ConfigurationError, ValueError):
    """Settings the simulator cannot draw, or lamps it cannot tell apart; the message says why."""


class NotifyingLight:
    """A ``LightOutput`` that shows each frame on ``inner``, then calls ``changed``."""

    def __init__(self, inner: LightOutput, *, changed: Callable[[], None]) -> None:
        self._inner = inner
        self._changed = changed

    def show(self, rgb: Rgb) -> None:
        self._inner.show(rgb)
        self._changed()

    def close(self) -> None:
        self._inner.close()


class SimulatedLamp:
    """One lamp on mock pins with its own MQTT link (and control socket, so ``touchlamp pair``
    reaches it); ``changed`` is called from the lamp's thread after every frame it shows."""

    def __init__(
        self,
        *,
        settings: DeviceSettings,
        clock: Clock | None = None,
        changed: Callable[[], None] = lambda: None,
        env_file: Path | None = None,
    ) -> None:
        hardware = settings.hardware
        if hardware.touch_kind not in ("ttp223", "button"):
            raise SimulatorError(
                f"lamp {settings.lamp_id}: the simulator presses a ttp223 or button touch pin, "
                f"not {hardware.touch_kind!r}; set TOUCHLAMP_DEVICE_HARDWARE__TOUCH_KIND=ttp223"
            )
        if hardware.led_kind not in ("rgb", "mono"):
            raise SimulatorError(
                f"lamp {settings.lamp_id}: the simulator reads an rgb or mono LED's pins, not "
                f"{hardware.led_kind!r}; set TOUCHLAMP_DEVICE_HARDWARE__LED_KIND=rgb"
            )
        # A mock pin has no contact bounce, and a debounce window would swallow the release
        # of a quick click from a script.
        # The owner's settings as the lamp's file has them now (a simulator started again on
        # the same settings object takes what its page changed, as a restarted lamp does).
        self.settings = with_lamp_file(settings).model_copy(
            update={"hardware": hardware.model_copy(update={"touch_bounce_seconds": 0.0})}
        )
        self._pins: PinFactory = mock_pin_factory()
        clock = clock or SystemClock(timezone=settings.quiet_hours.timezone)

        links: list[LampLink] = []

        def make_link(sink: LinkSink) -> AgentLink:
            links.append(LampLink.from_settings(self.settings, sink=sink, clock=clock))
            return links[-1]

        touch = open_touch_input(self.settings.hardware, pin_factory=self._pins)
        light = open_light_output(self.settings.hardware, pin_factory=self._pins)

        def frame_shown() -> None:
            self._forget_pin_history()
            changed()

        self.agent = LampAgent(
            settings=self.settings,
            touch=touch,
            light=NotifyingLight(light, changed=frame_shown),
            link=make_link,
            clock=clock,
        )
        self.link = links[0]
        # Home Assistant, when the settings name a home broker: a connection of its own.
        # Replaced when the owner changes the home broker's settings (the page, `device set`).
        self.homeassistant = HomeAssistantSwitch(self.settings, self.agent)
        # `touchlamp pair … --env-file` reaches this lamp through its own connection.
        self.owner = OwnerSettings(
            lamp=self.agent, env_file=env_file, on_change=self.homeassistant.apply
        )
        self.auth = OwnerAuth(state_dir=self.settings.state_dir, now=clock.monotonic)
        self.owner_lamp = OwnerLamp(
            agent=self.agent,
            owner=self.owner,
            link=self.link,
            auth=self.auth,
            broker=(self.settings.mqtt.host, self.settings.mqtt.effective_port),
        )
        # The page fetches the lamp's status again when this moves (see web.LampView).
        self.revision = 0
        self._changed = changed
        self.agent.add_listener(self._status_news)
        self._control = ControlServer(
            state_dir=self.settings.state_dir,
            link=self.link,
            owner=self.owner,
            describe=lambda: describe_running(self.agent),
        )

    @property
    def lamp_id(self) -> str:
        return self.settings.lamp_id

    @property
    def home(self) -> HomeAssistantBridge | None:
        """The Home Assistant bridge running now, if any."""
        return self.homeassistant.bridge

    def _status_news(self, _news: object) -> None:  # the agent's thread
        self.revision += 1
        self._changed()

    def start(self) -> None:
        # So that `touchlamp doctor` checks it as a simulated lamp (no GPIO, no service).
        mark_simulated(self.settings.state_dir)
        self._control.start()
        try:
            self.agent.start()
        except BaseException:
            self._control.stop()
            raise
        self.homeassistant.start()

    def stop(self) -> None:
        try:
            self.homeassistant.stop()  # first: it says "offline" while the lamp still runs
            self.agent.stop()
        finally:
            self._control.stop()

    def press(self) -> None:
        """Touch the sensor (it stays touched until ``release``). Any thread."""
        pin = self._pins.pin(self.settings.hardware.touch_pin)
        if self.settings.hardware.touch_kind == "button":
            pin.drive_low()
        else:
            pin.drive_high()

    def release(self) -> None:
        pin = self._pins.pin(self.settings.hardware.touch_pin)
        if self.settings.hardware.touch_kind == "button":
            pin.drive_high()
        else:
            pin.drive_low()

    def led(self) -> Rgb:
        """What the LED gets right now: the PWM duty of its pins as light (0 dark, 1 full)."""
        hardware = self.settings.hardware
        if hardware.led_kind == "mono":
            level = self._duty(hardware.led_pin, active_high=hardware.led_active_high)
            return Rgb(level, level, level)
        active_high = not hardware.rgb_common_anode
        return Rgb(
            self._duty(hardware.red_pin, active_high=active_high),
            self._duty(hardware.green_pin, active_high=active_high),
            self._duty(hardware.blue_pin, active_high=active_high),
        )

    def pin_history_length(self) -> int:
        """How many past states the lamp's mock pins hold (see ``_forget_pin_history``)."""
        return sum(len(self._pins.pin(number).states) for number in self._pin_numbers())

    def _forget_pin_history(self) -> None:
        """gpiozero's mock pins keep every state they went through (``MockPin.states``, for a
        test's ``assert_states``). A lamp shows ~30 frames a second while it glows, so in a
        simulator left running that list would grow by about a thousand entries per glow."""
        for number in self._pin_numbers():
            self._pins.pin(number).clear_states()

    def _pin_numbers(self) -> tuple[int, ...]:
        hardware = self.settings.hardware
        if hardware.led_kind == "mono":
            return (hardware.touch_pin, hardware.led_pin)
        return (hardware.touch_pin, hardware.red_pin, hardware.green_pin, hardware.blue_pin)

    def _duty(self, pin: int, *, active_high: bool) -> float:
        state = float(self._pins.pin(pin).state)
        return state if active_high else 1.0 - state

    def view(self) -> LampView:
        led = self.led()
        return LampView(
            id=self.lamp_id,
            name=self.settings.display_name,
            online=self.agent.online,
            led=(led.r, led.g, led.b),
            color=self.agent.color,
            gamma=self.settings.looks.gamma,
            revision=self.revision,
        )


class Simulator(StopsOnExit):
    """Several ``SimulatedLamp`` s behind one ``web.Board``. ``start`` / ``stop`` all of them."""

    def __init__(
        self,
        *,
        lamps: Sequence[DeviceSettings],
        clock: Clock | None = None,
        env_files: Mapping[str, Path] | None = None,
    ) -> None:
        ids = [settings.lamp_id for settings in lamps]
        if len(set(ids)) != len(ids):
            raise SimulatorError(f"each simulated lamp needs its own lamp id, got {ids}")
        states = [settings.state_dir.resolve() for settings in lamps]
        if len(set(states)) != len(states):
            raise SimulatorError(
                "each simulated lamp needs its own state directory (outbox, colour); "
                "set TOUCHLAMP_DEVICE_STATE_DIR per lamp"
            )
        self._watchers = Watchers()
        env_files = env_files or {}
        self._lamps: dict[str, SimulatedLamp] = {}
        for settings in lamps:
            self._lamps[settings.lamp_id] = SimulatedLamp(
                settings=settings,
                clock=clock,
                changed=self._watchers.notify,
                env_file=env_files.get(settings.lamp_id),
            )
        self._started: list[SimulatedLamp] = []

    def lamp(self, lamp_id: str) -> SimulatedLamp:
        try:
            return self._lamps[lamp_id]
        except KeyError:
            raise UnknownLampError(lamp_id) from None

    @property
    def lamps(self) -> list[SimulatedLamp]:
        return list(self._lamps.values())

    def start(self) -> None:
        for lamp in self._lamps.values():
            lamp.start()
            self._started.append(lamp)

    def stop(self) -> None:
        """Stop every started lamp (each publishes ``offline``); errors are logged, not raised,
        so one stuck lamp does not keep the others running."""
        while self._started:
            lamp = self._started.pop()
            try:
                lamp.stop()
            except (RuntimeError, OSError):
                _log.exception("simulated lamp %s did not stop cleanly", lamp.lamp_id)

    # ---- web.Board ----

    def views(self) -> list[LampView]:
        return [lamp.view() for lamp in self._lamps.values()]

    def press(self, lamp_id: str) -> None:
        self.lamp(lamp_id).press()

    def release(self, lamp_id: str) -> None:
        self.lamp(lamp_id).release()

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        return self._watchers.watch(callback)

    def owner(self, lamp_id: str) -> OwnerLamp:
        return self.lamp(lamp_id).owner_lamp

    @property
    def home(self) -> str | None:
        return None  # the lamps as drawn, each linking to its own page
