"""Enrollment tokens: the one line a relay operator hands to a lamp owner.

``touchlamp relay lamp add ID`` prints a token; ``touchlamp device enroll TOKEN`` turns it into the
lamp's settings. The token is ``tl1.`` followed by base64url (no padding) of a JSON object::

    {"v": 1, "lamp": "lamp-a", "password": "…", "host": "mqtt.example.net", "port": 8883,
     "root": "touchlamp/v1", "tls": true, "ca": "-----BEGIN CERTIFICATE-----…"}

``ca`` is present when the broker's certificate is signed by a private CA (touchlamp's own), so
the lamp can verify the broker without trusting anything else. The token holds a password: treat
it like one (it is printed once and never logged).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from touchlamp.protocol.errors import ProtocolError
from touchlamp.protocol.messages import LampId
from touchlamp.protocol.topics import DEFAULT_ROOT

__all__ = ["TOKEN_PREFIX", "Enrollment", "decode_token", "encode_token"]

TOKEN_PREFIX = "tl1."  # noqa: S105  a format marker, not a password
_MAX_TOKEN_CHARS = 16_384
_WHERE = "enrollment token"


class Enrollment(BaseModel):
    """What a lamp needs to connect: who it is, its password, and where the broker is."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    v: Literal[1] = 1
    lamp: LampId
    password: Annotated[str, StringConstraints(min_length=16, max_length=256)]
    host: Annotated[str, StringConstraints(min_length=1, max_length=253)]
    port: int = Field(ge=1, le=65535)
    root: Annotated[str, StringConstraints(min_length=1, max_length=100)] = DEFAULT_ROOT
    tls: bool = False
    ca: Annotated[str, StringConstraints(max_length=12_000)] | None = None


def encode_token(enrollment: Enrollment) -> str:
    raw = enrollment.model_dump_json(exclude_none=True).encode()
    return TOKEN_PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_token(token: str) -> Enrollment:
    """Parse a token; ``ProtocolError`` says what is wrong (truncated copy, wrong text…)."""
    token = token.strip()
    if len(token) > _MAX_TOKEN_CHARS:
        raise ProtocolError(_WHERE, f"too long ({len(token)} characters); copy just the token")
    if not token.startswith(TOKEN_PREFIX):
        raise ProtocolError(
            _WHERE,
            f"must start with {TOKEN_PREFIX!r}; copy the whole line `relay lamp add` printed",
        )
    body = token[len(TOKEN_PREFIX) :]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        data = json.loads(raw)
    except (binascii.Error, ValueError):
        raise ProtocolError(
            _WHERE, "is damaged (not base64url JSON); was it cut off when copied?"
        ) from None
    try:
        return Enrollment.model_validate(data)
    except ValidationError as error:
        first = error.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "token"
        raise ProtocolError(_WHERE, f"{where}: {first['msg']}") from None
