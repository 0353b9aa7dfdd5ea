"""Settings of one lamp: ``DeviceSettings`` (``TOUCHLAMP_DEVICE_…``, nested groups with ``__``).

Load them with ``load_settings(DeviceSettings, env_file=...)``; every field is described in
``config/device.env.example``. Groups:

- ``mqtt`` — where the broker is and how to log in (``…_MQTT__HOST``, ``…_MQTT__PASSWORD``);
- ``hardware`` — which touch sensor and LED are wired to which pins (``…_HARDWARE__TOUCH_PIN``);
- ``looks`` — every timing and level of the lamp's gestures and light (``…_LOOKS__GLOW__LEVEL``)
  and ``quiet_hours`` — when incoming glows stay dark (``…_QUIET_HOURS__START=22:00``): how the
  lamp looks, in config/looks.py;
- ``outbox`` — how many touches made offline are kept, and for how long;
- ``homeassistant`` — the home's own MQTT broker, for Home Assistant (off unless ``host`` is set).

The groups are models (not settings), so the lamp's parts and tests build them directly. Every
nested group forbids unknown fields, so a misspelt variable such as ``…_HARDWARE__TOUCH_PINS`` stops
start-up instead of being ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
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

from touchlamp.config.enrolment_file import EnrolmentFileSettingsSource
from touchlamp.config.lamp_file import LampFileSettingsSource
from touchlamp.config.looks import LookSettings, QuietHours
from touchlamp.config.mqtt import BrokerConnection, BrokerLogin, Host, TopicRoot, service_state_dir
from touchlamp.protocol.messages import Color, LampId, Name

__all__ = [
    "DeviceSettings",
    "HardwareSettings",
    "HomeAssistantSettings",
    "MqttSettings",
    "OutboxSettings",
    "default_state_dir",
]

_GROUP = ConfigDict(extra="forbid", frozen=True)

GpioPin = Annotated[int, Field(ge=0, le=27)]
"""A Broadcom (BCM) GPIO number as on the Raspberry Pi header, not a physical pin number."""


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
        # A token pasted on the lamp's page (config/enrolment_file.py): above the env file,
        # which the service cannot write, below everything set by hand.
        enrolment = EnrolmentFileSettingsSource(
            settings_cls,
            below=(init, env_settings, dotenv_settings),
            default_state_dir=default_state_dir(),
        )
        return lamp_file, init, env_settings, enrolment, dotenv_settings, nested_secrets


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
