"""Settings of one lamp: ``DeviceSettings`` (``TOUCHLAMP_DEVICE_…``, nested groups with ``__``).

Load them with ``load_settings(DeviceSettings, env_file=...)``; every field is described in
``config/device.env.example``. Groups:

- ``mqtt`` — where the broker is and how to log in (``…_MQTT__HOST``, ``…_MQTT__PASSWORD``);
- ``hardware`` — which touch sensor and LED are wired to which pins (``…_HARDWARE__TOUCH_PIN``);
- ``looks`` — every timing and level of the lamp's gestures and light (``…_LOOKS__GLOW__LEVEL``);
- ``quiet_hours`` — when incoming glows stay dark (``…_QUIET_HOURS__START=22:00``);
- ``outbox`` — how many touches made offline are kept, and for how long;
- ``homeassistant`` — the home's own MQTT broker, for Home Assistant (off unless ``host`` is set).

The looks groups are models (not settings) so the lamp core and tests build them directly, e.g.
``LookSettings(glow=GlowLook(fade_seconds=60))``. Every nested group forbids unknown fields, so a
misspelt variable such as ``…_LOOKS__GLOW__FADE_SECOND`` stops start-up instead of being ignored.
Groups that appear twice with different defaults (``glow`` / ``missed``, the tap feedbacks) are
separate subclasses: setting one field from the environment then keeps that group's own
defaults for the others (pydantic-settings replaces a default object wholesale).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NestedSecretsSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from touchlamp.config.lamp_file import LampFileSettingsSource
from touchlamp.config.mqtt import BrokerConnection, BrokerLogin, Host, TopicRoot, service_state_dir
from touchlamp.protocol.messages import Color, LampId, Name

__all__ = [
    "AuthFailedLook",
    "ColorChosenLook",
    "DeviceSettings",
    "DisconnectedLook",
    "GlowLook",
    "HardwareSettings",
    "HomeAssistantSettings",
    "LookSettings",
    "MissedLook",
    "MqttSettings",
    "NoNetworkLook",
    "OutboxSettings",
    "PulseLook",
    "QuietHours",
    "StatusLook",
    "TapQueuedLook",
    "TapRefusedLook",
    "TapSentLook",
    "TogetherLook",
    "default_state_dir",
]

_GROUP = ConfigDict(extra="forbid", frozen=True)

Level = Annotated[float, Field(ge=0.0, le=1.0)]
"""A perceived brightness: 0 is dark, 1 is the brightest the cap allows."""
Seconds = Annotated[float, Field(gt=0.0)]
GpioPin = Annotated[int, Field(ge=0, le=27)]
"""A Broadcom (BCM) GPIO number as on the Raspberry Pi header, not a physical pin number."""


def _check_zone(name: str) -> str:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}: use an IANA name such as 'Europe/Berlin' "
            "(see `timedatectl list-timezones`)"
        ) from None
    return name


TimeZoneName = Annotated[str, AfterValidator(_check_zone)]


def _int_or_hex(value: Any) -> Any:
    # I2C addresses are written in hex (``0x5A``) everywhere, including on the MPR121 board.
    if isinstance(value, str) and value.strip().lower().startswith("0x"):
        try:
            return int(value, 16)
        except ValueError:
            return value
    return value


I2cAddress = Annotated[int, BeforeValidator(_int_or_hex), Field(ge=0x5A, le=0x5D)]
"""An MPR121's I2C address: 0x5A to 0x5D, set by its ADDR pin."""


def default_state_dir() -> Path:
    """``$STATE_DIRECTORY`` (systemd's ``StateDirectory=``), else ``$XDG_STATE_HOME/touchlamp``."""
    return service_state_dir("touchlamp")


class MqttSettings(BrokerConnection):
    """How the lamp reaches the broker. ``username`` defaults to the lamp id (the broker's ACL
    ties the lamp's topics to it); the password comes from ``password`` or ``password_file``."""

    username: str | None = None


TouchKind = Literal["ttp223", "button", "mpr121", "none"]
LedKind = Literal["mono", "rgb", "neopixel", "none"]


class HardwareSettings(BaseModel):
    """What is wired where (BCM GPIO numbers).

    ``touch_kind``: ``ttp223`` — a capacitive touch module with a push-pull output, high while
    touched (pulled down so an unplugged sensor reads "not touched"); ``button`` — a plain switch
    to ground (internal pull-up, low while pressed); ``mpr121`` — an MPR121 board on I2C whose IRQ
    pin is on ``mpr121_irq_pin`` (needs the ``mpr121`` extra); ``none`` — no touch input.
    ``led_kind``: ``mono`` — one PWM LED on ``led_pin``; ``rgb`` — an RGB LED on ``red_pin``,
    ``green_pin``, ``blue_pin`` (``rgb_common_anode`` inverts the pins); ``neopixel`` — a WS2812
    strip (needs the ``neopixel`` extra); ``none`` — no light.
    """

    model_config = _GROUP

    touch_kind: TouchKind = "ttp223"
    touch_pin: GpioPin = 17
    # gpiozero ignores edges closer together than this; 0 turns debouncing off.
    touch_bounce_seconds: float = Field(default=0.02, ge=0.0, le=1.0)
    mpr121_channel: int = Field(default=0, ge=0, le=11)
    mpr121_address: I2cAddress = 0x5A
    mpr121_irq_pin: GpioPin = 4

    led_kind: LedKind = "rgb"
    led_pin: GpioPin = 18
    led_active_high: bool = True
    red_pin: GpioPin = 12
    green_pin: GpioPin = 13
    blue_pin: GpioPin = 19
    rgb_common_anode: bool = False
    # How a single-colour LED shows a colour: its brightest channel, or its luminance.
    mono_from: Literal["max", "luminance"] = "max"
    # The SPI driver sends on MOSI, GPIO10 (the only pin it can use).
    neopixel_pin: Annotated[str, StringConstraints(pattern=r"^D\d{1,2}$")] = "D10"
    neopixel_count: int = Field(default=12, ge=1, le=1024)
    neopixel_order: Literal["RGB", "GRB", "RGBW", "GRBW"] = "GRB"

    @field_validator("touch_kind", "led_kind", mode="before")
    @classmethod
    def _none_is_a_kind(cls, value: object) -> object:
        # The settings turn the text "none" into None (so optional colours can be unset); for
        # these two fields "none" is a kind of hardware, not a missing value.
        return "none" if value is None else value

    @model_validator(mode="after")
    def _check_pins(self) -> Self:
        used: dict[int, str] = {}
        for name, pin in self._pins_in_use():
            if pin in used:
                raise ValueError(
                    f"GPIO{pin} is used twice ({used[pin]} and {name}): give each its own pin"
                )
            used[pin] = name
        return self

    def _pins_in_use(self) -> list[tuple[str, int]]:
        pins: list[tuple[str, int]] = []
        if self.touch_kind in ("ttp223", "button"):
            pins.append(("touch_pin", self.touch_pin))
        elif self.touch_kind == "mpr121":
            pins.append(("mpr121_irq_pin", self.mpr121_irq_pin))
        if self.led_kind == "mono":
            pins.append(("led_pin", self.led_pin))
        elif self.led_kind == "rgb":
            pins += [
                ("red_pin", self.red_pin),
                ("green_pin", self.green_pin),
                ("blue_pin", self.blue_pin),
            ]
        elif self.led_kind == "neopixel":
            pins.append(("neopixel_pin", int(self.neopixel_pin[1:])))
        return pins


class PulseLook(BaseModel):
    """A short feedback: ``pulses`` soft swells to ``level`` within ``seconds``, blended over
    whatever the lamp shows. ``color`` ``None`` means the lamp's own colour."""

    model_config = _GROUP

    color: Color | None = None
    level: Level = 1.0
    pulses: int = Field(default=1, ge=1, le=10)
    seconds: Seconds = 1.2


class TapSentLook(PulseLook):
    """The touch went out: one swell in your own colour."""


class TapQueuedLook(PulseLook):
    """Offline, the touch waits in the outbox: two dimmer, slower swells in your own colour."""

    level: Level = 0.4
    pulses: int = Field(default=2, ge=1, le=10)
    seconds: Seconds = 2.4


class TapRefusedLook(PulseLook):
    """Not paired, nobody to send to: three faint warm-white swells."""

    color: Color | None = "#ffc680"
    level: Level = 0.3
    pulses: int = Field(default=3, ge=1, le=10)
    seconds: Seconds = 1.8


class ColorChosenLook(PulseLook):
    """A colour was picked by holding: two swells in the new colour."""

    pulses: int = Field(default=2, ge=1, le=10)
    seconds: Seconds = 1.6


class GlowLook(BaseModel):
    """A received touch: rise in ``attack_seconds``, breathe ``breaths`` times (each
    ``breath_seconds`` long, between ``level`` and ``level * breath_low``), then fade evenly (to
    the eye) from ``level`` to dark over ``fade_seconds``."""

    model_config = _GROUP

    level: Level = 1.0
    attack_seconds: Seconds = 0.4
    breaths: int = Field(default=6, ge=0, le=1000)
    breath_seconds: Seconds = 4.0
    breath_low: Level = 0.5
    fade_seconds: Seconds = 30 * 60.0


class MissedLook(GlowLook):
    """At the end of quiet hours, the last sender's colour: softer, slower, and longer."""

    level: Level = 0.35
    attack_seconds: Seconds = 3.0
    breaths: int = Field(default=2, ge=0, le=1000)
    breath_seconds: Seconds = 8.0
    breath_low: Level = 0.6
    fade_seconds: Seconds = 60 * 60.0


class TogetherLook(BaseModel):
    """A mutual touch (both lamps touched within the relay's window): ``turns`` times, the
    sender's colour softly gives way to yours and comes back (``turn_seconds`` each); then the
    glow fades in the sender's colour as usual."""

    model_config = _GROUP

    level: Level = 1.0
    turns: int = Field(default=4, ge=1, le=1000)
    turn_seconds: Seconds = 3.0


class StatusLook(BaseModel):
    """A slow swell repeating every ``period_seconds``; ``level`` 0 turns it off.
    ``color`` ``None`` means the lamp's own colour.

    Levels are perceived brightness and the LED gets ``level ** gamma``: the old default of
    0.06 peaked at a PWM duty of 0.002, which nobody could see (issue 13). 0.3 peaks at about
    7 %: clearly there in a lit room, still far below a glow (1.0), so it cannot be taken for
    a touch."""

    model_config = _GROUP

    color: Color | None = None
    level: Level = 0.3
    period_seconds: Seconds = 6.0


class DisconnectedLook(StatusLook):
    """Not connected for longer than ``looks.disconnected_grace_seconds``."""


class NoNetworkLook(StatusLook):
    """No network at all for longer than ``looks.disconnected_grace_seconds`` (no Wi-Fi, or the
    Wi-Fi set-up hotspot is open, DEPLOY.md "Give a lamp"): a quicker swell in cool white, not
    the lamp's colour, so "choose a Wi-Fi" is not mistaken for "the broker is away"."""

    color: Color | None = "#b4c8ff"
    period_seconds: Seconds = 3.0


class AuthFailedLook(StatusLook):
    """The broker refused the lamp's credentials: a faster, reddish swell (re-enroll the lamp),
    a little brighter than "not connected" (it needs its owner to act)."""

    color: Color | None = "#ff3000"
    level: Level = 0.4
    period_seconds: Seconds = 2.0


class StateTroubleLook(StatusLook):
    """The lamp's state directory refuses writes (a full disk, a read-only SD card): a quick
    yellow swell, as bright as a refused login's (it needs its owner too). The lamp still works;
    touches made offline are lost if it restarts, and the card may be dying: replace it
    (DEPLOY.md)."""

    color: Color | None = "#ffc000"
    level: Level = 0.4
    period_seconds: Seconds = 1.0


class LookSettings(BaseModel):
    """Every timing and level of the lamp's light. Levels are *perceived* brightness (0..1); the
    core turns them into PWM values with ``gamma`` and scales every frame by ``max_brightness``."""

    model_config = _GROUP

    gamma: float = Field(default=2.2, ge=1.0, le=4.0)
    max_brightness: Level = 1.0
    # Fast animations redraw at most this often; slow ones (a long fade) only when their
    # perceived brightness has moved by ``frame_step``, so a fading lamp sleeps between frames.
    frame_rate: float = Field(default=30.0, gt=0.0, le=200.0)
    frame_step: float = Field(default=1 / 512, gt=0.0, le=0.1)

    hold_seconds: Seconds = 1.0
    hue_cycle_seconds: Seconds = 6.0
    pick_level: Level = 1.0

    tap_sent: TapSentLook = TapSentLook()
    tap_queued: TapQueuedLook = TapQueuedLook()
    tap_refused: TapRefusedLook = TapRefusedLook()
    color_chosen: ColorChosenLook = ColorChosenLook()
    # A send result (queued / refused) arriving later than this after the tap is not shown.
    tap_result_window_seconds: Seconds = 5.0

    glow: GlowLook = GlowLook()
    together: TogetherLook = TogetherLook()
    missed: MissedLook = MissedLook()
    # Glows arriving less than this apart (a backlog delivered on reconnect) are one glow.
    coalesce_seconds: float = Field(default=2.0, ge=0.0)
    glow_max_age_seconds: Seconds = 12 * 3600.0

    disconnected_grace_seconds: float = Field(default=60.0, ge=0.0)
    disconnected: DisconnectedLook = DisconnectedLook()
    no_network: NoNetworkLook = NoNetworkLook()
    auth_failed: AuthFailedLook = AuthFailedLook()
    state_trouble: StateTroubleLook = StateTroubleLook()
    # A faint steady light in an online partner's colour; 0 turns it off. 0.15 is a PWM duty of
    # about 1.5 %: seen in a dim room, hardly by day, and far below a glow, so "they are
    # there" never reads as "they touched" (issue 13; it was 0, off, so nobody knew it existed).
    # It stays dark in quiet hours.
    ambient_level: Level = 0.15


class QuietHours(BaseModel):
    """Local times between which incoming glows stay dark (``22:00`` to ``07:00`` crosses midnight).

    ``timezone`` is an IANA name; without it the system's local time is used, which is right
    except for scheduling across a daylight-saving change (corrected at the next wake-up).
    """

    model_config = _GROUP

    enabled: bool = False
    start: dt.time = dt.time(22, 0)
    end: dt.time = dt.time(7, 0)
    timezone: TimeZoneName | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("start and end are local times: drop the offset, set timezone")
        if self.enabled and self.start == self.end:
            raise ValueError(f"start and end are both {self.start:%H:%M}: quiet hours need a span")
        return self


class OutboxSettings(BaseModel):
    """Touches made while offline wait on disk; the oldest are dropped past either bound."""

    model_config = _GROUP

    max_entries: int = Field(default=1000, ge=1, le=1_000_000)
    max_age_hours: float = Field(default=12.0, gt=0.0)


class HomeAssistantSettings(BrokerLogin):
    """The home's MQTT broker, the one Home Assistant uses (often its Mosquitto add-on).

    A second connection, entirely apart from the lamp's own broker: the lamp publishes Home
    Assistant discovery configs there and follows its own command topics (PROTOCOL.md, "Home
    Assistant"). Off unless ``host`` is set. ``enabled`` false with ``host`` set removes the
    lamp's discovery configs from that broker (the way to turn the integration off).
    """

    host: Host | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    username: str | None = None
    tls: bool = False
    ca_file: Path | None = None
    # Home Assistant itself speaks 3.1.1 by default; every broker it works with takes it.
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    discovery_prefix: TopicRoot = "homeassistant"
    # The lamp's state and command topics start with this, then the lamp id.
    topic_root: TopicRoot = "touchlamp"
    enabled: bool = True
    # Home Assistant's "Visit" link; none: http://<this host's name>.local:<page_port>/.
    configuration_url: Annotated[str, StringConstraints(pattern=r"^https?://\S+$")] | None = None
    page_port: int = Field(default=8080, ge=1, le=65535)
    keepalive_seconds: int = Field(default=60, ge=5, le=65535)
    # A broker that takes the connection and never answers is given up after this.
    connect_timeout_seconds: float = Field(default=10.0, gt=0.0)
    reconnect_min_seconds: float = Field(default=1.0, gt=0.0)
    reconnect_max_seconds: float = Field(default=120.0, gt=0.0)
    # Presses of the "Send a touch" button closer together than this are not sent (counted):
    # an automation gone wrong must not flood the partners' lamps.
    min_touch_interval_seconds: float = Field(default=2.0, ge=0.0)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.ca_file is not None and not self.tls:
            raise ValueError(
                "homeassistant.ca_file is set but tls is off: set "
                "TOUCHLAMP_DEVICE_HOMEASSISTANT__TLS=true to use it"
            )
        if self.password is not None and self.username is None:
            raise ValueError(
                "homeassistant.password is set without a username: set "
                "TOUCHLAMP_DEVICE_HOMEASSISTANT__USERNAME (the home broker's login)"
            )
        if self.reconnect_max_seconds < self.reconnect_min_seconds:
            raise ValueError(
                f"homeassistant.reconnect_max_seconds ({self.reconnect_max_seconds}) must not "
                f"be below reconnect_min_seconds ({self.reconnect_min_seconds})"
            )
        return self

    @property
    def configured(self) -> bool:
        """Whether a home broker is set (enabled or not)."""
        return self.host is not None

    @property
    def active(self) -> bool:
        """Whether the lamp should appear in Home Assistant."""
        return self.host is not None and self.enabled

    @property
    def effective_port(self) -> int:
        """``port``, else 8883 with TLS and 1883 without."""
        if self.port is not None:
            return self.port
        return 8883 if self.tls else 1883


class DeviceSettings(BaseSettings):
    """One lamp. Only ``lamp_id`` is required (``touchlamp device enroll`` writes it)."""

    model_config = SettingsConfigDict(
        env_prefix="TOUCHLAMP_DEVICE_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        # ``…_LOOKS__AUTH_FAILED__COLOR=none`` and the like set an optional field back to None.
        env_parse_none_str="none",
    )

    lamp_id: LampId
    # The protocol's form (printable, 1-40 characters): the name is announced to the group.
    name: Name | None = None
    color: Color = "#ff8c1a"
    state_dir: Path = Field(default_factory=default_state_dir)
    mqtt: MqttSettings = MqttSettings()
    hardware: HardwareSettings = HardwareSettings()
    looks: LookSettings = LookSettings()
    quiet_hours: QuietHours = QuietHours()
    outbox: OutboxSettings = OutboxSettings()
    homeassistant: HomeAssistantSettings = HomeAssistantSettings()

    @property
    def display_name(self) -> str:
        return self.name or self.lamp_id

    @property
    def mqtt_username(self) -> str:
        return self.mqtt.username or self.lamp_id

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Nested secret files, so systemd's ``LoadCredential=touchlamp_device_mqtt__password:…``
        # fills ``mqtt.password`` like the environment variable of the same name would.
        nested_secrets = NestedSecretsSettingsSource(file_secret_settings)
        init = _PlainInitSource(init_settings)
        # The owner's choices (the lamp's page, ``device set``) win over everything else,
        # the installer's env file included: see config/lamp_file.py.
        lamp_file = LampFileSettingsSource(
            settings_cls,
            below=(init, env_settings, dotenv_settings),
            default_state_dir=default_state_dir(),
        )
        return lamp_file, init, env_settings, dotenv_settings, nested_secrets


class _PlainInitSource(PydanticBaseSettingsSource):
    """The constructor's arguments with groups as plain dicts.

    pydantic-settings merges the sources' dicts key by key, but a group passed as a model
    (``looks=LookSettings(hold_seconds=5)``) would be replaced whole by the lamp file's
    ``looks`` and lose its other values.
    """

    def __init__(self, inner: PydanticBaseSettingsSource) -> None:
        super().__init__(inner.settings_cls)
        self._inner = inner

    def get_field_value(
        self,
        field: FieldInfo,  # noqa: ARG002  the base class's signature
        field_name: str,
    ) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ passes the arguments on

    def __call__(self) -> dict[str, Any]:
        return {
            key: value.model_dump() if isinstance(value, BaseModel) else value
            for key, value in self._inner().items()
        }
