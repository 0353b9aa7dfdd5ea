"""Payloads: round trips, the documented wire form, and one error type for any bytes."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from touchlamp.protocol import (
    MAX_PAYLOAD_BYTES,
    Availability,
    Glow,
    GroupMember,
    GroupState,
    PairAction,
    PairRequest,
    PairResponse,
    ProtocolError,
    Touch,
    color_to_rgb,
    decode_availability,
    decode_glow,
    decode_group,
    decode_pair_request,
    decode_pair_response,
    decode_touch,
    encode,
    encode_availability,
    rgb_to_color,
    touch_id,
)

TOPIC = "touchlamp/v1/lamp/lamp-a/touch"

lamp_ids = st.from_regex(r"[a-z0-9][a-z0-9-]{2,31}", fullmatch=True)
colors = st.from_regex(r"#[0-9a-f]{6}", fullmatch=True)
epoch_ms = st.integers(min_value=0, max_value=2**53 - 1)
names = st.text(min_size=1, max_size=40).filter(str.isprintable)

touches = st.builds(
    Touch,
    seq=st.integers(min_value=0, max_value=2**53 - 1),
    stream=st.integers(min_value=0, max_value=2**32 - 1),
    color=colors,
    ts=epoch_ms,
)
glows = st.builds(
    Glow,
    touch=st.builds(
        touch_id,
        lamp_ids,
        st.integers(min_value=0, max_value=2**32 - 1),
        st.integers(min_value=0, max_value=10**9),
    ),
    sender=lamp_ids,
    color=colors,
    mutual=st.booleans(),
    at=epoch_ms,
)
members = st.builds(GroupMember, id=lamp_ids, name=names, color=colors, online=st.booleans())
groups = st.builds(GroupState, group=st.none() | names, members=st.lists(members, max_size=8))
pair_requests = st.builds(
    PairRequest,
    action=st.sampled_from(PairAction),
    code=st.none() | st.from_regex(r"[A-Z2-9]{6,8}", fullmatch=True),
    color=st.none() | colors,
    name=st.none() | names,
)
pair_responses = st.builds(
    PairResponse,
    action=st.sampled_from(PairAction),
    ok=st.booleans(),
    reason=st.none() | st.text(max_size=200),
    code=st.none() | st.from_regex(r"[A-Z2-9]{6,8}", fullmatch=True),
    expires_at=st.none() | epoch_ms,
    group=st.none() | names,
    members=st.lists(lamp_ids, max_size=8),
)

DECODERS: list[tuple[st.SearchStrategy[BaseModel], Callable[[str, bytes], BaseModel]]] = [
    (touches, decode_touch),
    (glows, decode_glow),
    (groups, decode_group),
    (pair_requests, decode_pair_request),
    (pair_responses, decode_pair_response),
]


@pytest.mark.parametrize(("models", "decode"), DECODERS)
@given(data=st.data())
def test_round_trip(
    models: st.SearchStrategy[BaseModel],
    decode: Callable[[str, bytes], BaseModel],
    data: st.DataObject,
) -> None:
    message = data.draw(models)
    assert decode(TOPIC, encode(message)) == message


@pytest.mark.parametrize("decode", [decode for _, decode in DECODERS] + [decode_availability])
@given(payload=st.binary(max_size=MAX_PAYLOAD_BYTES + 10))
def test_arbitrary_bytes_raise_only_protocol_error(
    decode: Callable[[str, bytes], object], payload: bytes
) -> None:
    try:
        decode(TOPIC, payload)
    except ProtocolError as error:
        caught = error
    else:
        return
    assert caught.topic == TOPIC
    assert caught.reason


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@pytest.mark.parametrize("decode", [decode for _, decode in DECODERS])
@given(
    document=st.dictionaries(
        st.sampled_from(
            [
                "seq",
                "stream",
                "color",
                "ts",
                "touch",
                "from",
                "at",
                "mutual",
                "group",
                "members",
                "action",
                "code",
                "ok",
            ]
        ),
        json_values,
        max_size=6,
    )
)
def test_json_with_wrong_shapes_raises_only_protocol_error(
    decode: Callable[[str, bytes], object], document: dict[str, object]
) -> None:
    try:
        decode(TOPIC, json.dumps(document).encode())
    except ProtocolError as error:
        caught = error
    else:
        return
    assert caught.topic == TOPIC


def test_glow_wire_form_uses_from() -> None:
    glow = Glow(touch="lamp-a:7:17", sender="lamp-a", color="#FF8800", at=5)
    assert json.loads(encode(glow)) == {
        "touch": "lamp-a:7:17",
        "from": "lamp-a",
        "color": "#ff8800",
        "mutual": False,
        "at": 5,
    }


@pytest.mark.parametrize(
    ("payload", "complaint"),
    [
        (b"\xff\xfe", "not UTF-8"),
        (b"{", "Invalid JSON"),
        (b"[]", "Input should be an object"),
        (b'{"seq": "1", "stream": 1, "color": "#ffffff", "ts": 1}', "seq"),
        (b'{"seq": 1.5, "stream": 1, "color": "#ffffff", "ts": 1}', "seq"),
        (b'{"seq": 1, "stream": 1, "color": "red", "ts": 1}', "color"),
        (b'{"seq": 1, "stream": 1, "color": "#ffffff"}', "ts: Field required"),
        (b'{"seq": 1, "stream": 1, "color": "#ffffff", "ts": 1, "from": "x"}', "from"),
        (b'{"seq": true, "stream": 1, "color": "#ffffff", "ts": 1}', "seq"),
        (b" " * (MAX_PAYLOAD_BYTES + 1), "over the limit"),
        (b"[" * 3000 + b"]" * 3000, "over the limit"),
    ],
)
def test_decode_errors_name_topic_and_problem(payload: bytes, complaint: str) -> None:
    with pytest.raises(ProtocolError, match=complaint) as raised:
        decode_touch(TOPIC, payload)
    assert str(raised.value).startswith(TOPIC + ": ")


def test_deeply_nested_json_within_the_size_limit_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        decode_touch(TOPIC, b"[" * 2000 + b"]" * 2000)


def test_availability_is_plain_text() -> None:
    assert encode_availability(Availability.OFFLINE) == b"offline"
    assert decode_availability(TOPIC, b"online") is Availability.ONLINE
    with pytest.raises(ProtocolError, match="'online' or 'offline'"):
        decode_availability(TOPIC, b"ONLINE")


def test_unpaired_group_state_is_explicit() -> None:
    state = decode_group(TOPIC, b'{"group": null, "members": []}')
    assert state == GroupState(group=None, members=[])


@given(color=colors)
def test_colour_conversion_round_trips(color: str) -> None:
    assert rgb_to_color(*color_to_rgb(color)) == color


def test_rgb_to_color_clamps() -> None:
    assert rgb_to_color(2.0, -1.0, 0.5) == "#ff0080"
