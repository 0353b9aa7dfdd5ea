"""Encoding and decoding payloads: any bytes in, a model or one ``ProtocolError`` out.

Each decoder takes the topic the payload arrived on (for the error message) and the raw bytes.
Whatever the bytes are — oversize, not UTF-8, not JSON, wrong types, missing or extra fields —
the only exception that leaves a decoder is ``ProtocolError`` naming the topic and the problem.
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError

from touchlamp.protocol.errors import ProtocolError
from touchlamp.protocol.messages import (
    MAX_PAYLOAD_BYTES,
    Availability,
    Glow,
    GroupState,
    PairRequest,
    PairResponse,
    Touch,
)

__all__ = [
    "decode_availability",
    "decode_glow",
    "decode_group",
    "decode_pair_request",
    "decode_pair_response",
    "decode_touch",
    "encode",
    "encode_availability",
]

M = TypeVar("M", bound=BaseModel)


def encode(message: BaseModel) -> bytes:
    """Compact JSON with the wire's field names (``from``, not ``sender``)."""
    return message.model_dump_json(by_alias=True).encode()


def encode_availability(availability: Availability) -> bytes:
    return availability.value.encode()


def decode_touch(topic: str, payload: bytes) -> Touch:
    return _decode(Touch, topic, payload)


def decode_glow(topic: str, payload: bytes) -> Glow:
    return _decode(Glow, topic, payload)


def decode_group(topic: str, payload: bytes) -> GroupState:
    return _decode(GroupState, topic, payload)


def decode_pair_request(topic: str, payload: bytes) -> PairRequest:
    return _decode(PairRequest, topic, payload)


def decode_pair_response(topic: str, payload: bytes) -> PairResponse:
    return _decode(PairResponse, topic, payload)


def decode_availability(topic: str, payload: bytes) -> Availability:
    text = _text(topic, payload)
    try:
        return Availability(text)
    except ValueError:
        raise ProtocolError(
            topic, f"availability must be 'online' or 'offline', got {text[:40]!r}"
        ) from None


def _text(topic: str, payload: bytes) -> str:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ProtocolError(
            topic, f"payload of {len(payload)} bytes is over the limit of {MAX_PAYLOAD_BYTES}"
        )
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ProtocolError(topic, f"payload is not UTF-8 (byte {error.start})") from None


def _decode(model: type[M], topic: str, payload: bytes) -> M:
    text = _text(topic, payload)
    try:
        return model.model_validate_json(text)
    except ValidationError as error:
        raise ProtocolError(topic, _summarise(model, error)) from None
    except (ValueError, TypeError, RecursionError) as error:
        # pydantic-core reports deep nesting and similar parser limits as plain errors.
        raise ProtocolError(topic, f"not a valid {model.__name__} payload: {error}"[:300]) from None


def _summarise(model: type[BaseModel], error: ValidationError) -> str:
    problems = []
    for issue in error.errors(include_url=False, include_input=False)[:3]:
        where = ".".join(str(part) for part in issue["loc"]) or "payload"
        problems.append(f"{where}: {issue['msg']}")
    more = error.error_count() - len(problems)
    suffix = f" (and {more} more)" if more > 0 else ""
    return f"not a valid {model.__name__}: " + "; ".join(problems) + suffix
