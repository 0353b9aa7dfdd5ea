"""Payload models of wire protocol v1 (JSON, UTF-8, at most ``MAX_PAYLOAD_BYTES``).

Models are frozen and forbid unknown fields, so what the relay accepts is exactly what PROTOCOL.md
documents. Times are milliseconds since the Unix epoch (UTC); colours are ``#rrggbb`` in lower
case. A payload never names its own sender: the topic does.
"""

from __future__ import annotations

import enum
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from touchlamp.protocol.topics import LAMP_ID_PATTERN

__all__ = [
    "MAX_GROUP_SIZE",
    "MAX_PAYLOAD_BYTES",
    "Availability",
    "Color",
    "Glow",
    "GroupMember",
    "GroupState",
    "LampId",
    "PairAction",
    "PairRequest",
    "PairResponse",
    "Touch",
    "TouchId",
    "color_to_rgb",
    "rgb_to_color",
    "touch_id",
]

MAX_PAYLOAD_BYTES = 4096
"""Larger payloads are refused before parsing (the broker's packet limit is set above this)."""

MAX_GROUP_SIZE = 32
"""The wire's upper bound on members; the relay's configured limit (default 8) is lower."""

# 2**53 - 1: the largest integer every JSON implementation represents exactly.
_MAX_JSON_INT = 9_007_199_254_740_991


def _lower(value: str) -> str:
    return value.lower()


Color = Annotated[str, StringConstraints(pattern=r"^#[0-9a-fA-F]{6}$"), AfterValidator(_lower)]
LampId = Annotated[str, StringConstraints(pattern=f"^{LAMP_ID_PATTERN.pattern}$")]
# Opaque to lamps (they only compare it to drop a redelivered glow); the relay writes
# "{lamp}:{stream}:{seq}", see ``touch_id``.
TouchId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9:-]{2,80}$")]
EpochMs = Annotated[int, Field(ge=0, le=_MAX_JSON_INT)]


def _printable(value: str) -> str:
    # Names are shown in terminals (`relay lamp list`), logs and other owners' lamps: no control
    # or formatting characters (terminal escapes, bidi overrides, line breaks).
    if not value.isprintable():
        raise ValueError("use printable characters only (no control or formatting characters)")
    return value


Name = Annotated[str, StringConstraints(min_length=1, max_length=40), AfterValidator(_printable)]

_STRICT = ConfigDict(
    frozen=True, extra="forbid", strict=True, validate_by_name=True, validate_by_alias=True
)


class Touch(BaseModel):
    """A lamp was touched: ``{"seq": 17, "stream": 3735928559, "color": "#ff8800", "ts": …}``.

    ``seq`` counts this lamp's touches (persisted, increasing). ``stream`` is a random number the
    lamp picks when it creates its seq counter (first start, factory reset): the relay
    de-duplicates on (lamp, stream, seq), so a lamp whose counter was reset is not mistaken for
    one that repeats itself. ``ts`` is the lamp's own clock, which may be wrong, so the relay uses
    it only for display, never for ordering or expiry.
    """

    model_config = _STRICT

    seq: int = Field(ge=0, le=_MAX_JSON_INT)
    stream: int = Field(ge=0, le=2**32 - 1)
    color: Color
    ts: EpochMs


class Glow(BaseModel):
    """Light up in someone's colour: the relay's message to each other member of a group.

    ``touch`` identifies the touch (``"lamp-a:3735928559:17"``, see ``touch_id``) so a lamp can
    drop a redelivered glow; ``mutual`` is true when two members touched within the relay's
    mutual window; ``at`` is the relay's clock when it received the touch.
    """

    # Written out (not ``_STRICT``) so pydantic's mypy plugin sees that ``sender=`` is accepted.
    model_config = ConfigDict(
        frozen=True, extra="forbid", strict=True, validate_by_name=True, validate_by_alias=True
    )

    touch: TouchId
    sender: LampId = Field(alias="from")
    color: Color
    mutual: bool = False
    at: EpochMs


class Availability(enum.Enum):
    """The retained availability payload, plain text (``offline`` is also the last will)."""

    ONLINE = "online"
    OFFLINE = "offline"


class GroupMember(BaseModel):
    model_config = _STRICT

    id: LampId
    name: Name
    color: Color
    online: bool


class GroupState(BaseModel):
    """Retained on each member's group topic whenever membership, names, colours or presence change.

    ``group`` is ``None`` and ``members`` empty when the lamp is not paired (the relay also
    publishes this when an unpaired lamp touches, so the lamp can show "not paired").
    """

    model_config = _STRICT

    group: Name | None
    members: list[GroupMember] = Field(max_length=MAX_GROUP_SIZE)


class PairAction(enum.Enum):
    CREATE = "create"  # make a code others can join with (creates a group if needed)
    JOIN = "join"  # join the group of the lamp that created ``code``
    LEAVE = "leave"  # leave the current group
    STATUS = "status"  # ask for the current group (answered like any request)
    COLOR = "color"  # announce this lamp's chosen colour (and name) to its group


class PairRequest(BaseModel):
    """An MQTT 5 request on ``…/pair`` (with a response topic and correlation data)."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        strict=True,
        validate_by_name=True,
        validate_by_alias=True,
        use_enum_values=False,
    )

    action: Annotated[PairAction, Field(strict=False)]
    code: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9-]{4,16}$")] | None = None
    color: Color | None = None
    name: Name | None = None


class PairResponse(BaseModel):
    """The relay's answer. ``ok`` false means refused, ``reason`` says why in plain words."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", strict=True, validate_by_name=True, validate_by_alias=True
    )

    action: Annotated[PairAction, Field(strict=False)]
    ok: bool
    reason: Annotated[str, StringConstraints(max_length=200)] | None = None
    code: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9-]{4,16}$")] | None = None
    expires_at: EpochMs | None = None
    group: Name | None = None
    members: list[LampId] = Field(default_factory=list, max_length=MAX_GROUP_SIZE)
    error: (
        Literal[
            "bad-request",
            "bad-code",
            "expired-code",
            "group-full",
            "locked-out",
            "busy",
            "not-paired",
            "already-paired",
            "not-enrolled",
        ]
        | None
    ) = None


def touch_id(lamp_id: str, stream: int, seq: int) -> str:
    """The id a glow carries for the touch it shows: unique per lamp, stream and seq."""
    return f"{lamp_id}:{stream}:{seq}"


_HEX_COLOR = re.compile(r"#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})")


def color_to_rgb(color: str) -> tuple[float, float, float]:
    """``"#ff8000"`` → ``(1.0, 0.50…, 0.0)``; the colour must already be validated."""
    match = _HEX_COLOR.fullmatch(color.lower())
    if match is None:
        raise ValueError(f"not a #rrggbb colour: {color[:20]!r}")
    red, green, blue = (int(part, 16) / 255 for part in match.groups())
    return red, green, blue


def rgb_to_color(red: float, green: float, blue: float) -> str:
    """``(1.0, 0.5, 0.0)`` → ``"#ff8000"``; channels are clamped to 0..1."""
    channels = (max(0.0, min(1.0, value)) for value in (red, green, blue))
    return "#" + "".join(f"{round(value * 255):02x}" for value in channels)
