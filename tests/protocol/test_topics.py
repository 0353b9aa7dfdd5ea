"""Topic names: builders and the parser agree, and anything else is refused with a reason."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from touchlamp.protocol import Kind, ProtocolError, TopicMatch, Topics, validate_lamp_id

lamp_ids = st.from_regex(r"[a-z0-9][a-z0-9-]{2,31}", fullmatch=True)


@pytest.mark.parametrize(
    ("kind", "topic"),
    [
        (Kind.TOUCH, "touchlamp/v1/lamp/lamp-a/touch"),
        (Kind.GLOW, "touchlamp/v1/lamp/lamp-a/glow"),
        (Kind.AVAILABILITY, "touchlamp/v1/lamp/lamp-a/availability"),
        (Kind.GROUP, "touchlamp/v1/lamp/lamp-a/group"),
        (Kind.PAIR, "touchlamp/v1/lamp/lamp-a/pair"),
        (Kind.PAIR_RESPONSE, "touchlamp/v1/lamp/lamp-a/pair/response"),
    ],
)
def test_topic_table(kind: Kind, topic: str) -> None:
    topics = Topics()
    assert topics.lamp("lamp-a", kind) == topic
    assert topics.parse(topic) == TopicMatch(lamp_id="lamp-a", kind=kind)


def test_filters_for_relays() -> None:
    topics = Topics("test/42")
    assert topics.every(Kind.TOUCH) == "test/42/lamp/+/touch"
    assert topics.shared("relays", Kind.PAIR) == "$share/relays/test/42/lamp/+/pair"


@given(lamp_id=lamp_ids, kind=st.sampled_from(Kind))
def test_build_then_parse_round_trips(lamp_id: str, kind: Kind) -> None:
    topics = Topics()
    assert topics.parse(topics.lamp(lamp_id, kind)) == TopicMatch(lamp_id, kind)


@given(text=st.text(max_size=300))
def test_parse_refuses_anything_else_with_protocol_error(text: str) -> None:
    try:
        match = Topics().parse(text)
    except ProtocolError as error:
        caught = error
    else:
        assert Topics().lamp(match.lamp_id, match.kind) == text
        return
    assert caught.reason


@pytest.mark.parametrize(
    "bad",
    ["", "ab", "A-lamp", "-lamp", "lamp_a", "lamp/a", "lamp+", "#", "x" * 33, "lämp"],
)
def test_bad_lamp_ids_are_refused_with_the_rule(bad: str) -> None:
    with pytest.raises(ProtocolError, match="3-32 characters"):
        validate_lamp_id(bad)


@pytest.mark.parametrize(
    "topic",
    [
        "other/v1/lamp/lamp-a/touch",
        "touchlamp/v1/lamp/lamp-a/touch/extra",
        "touchlamp/v1/lamp/LAMP/touch",
        "touchlamp/v1/lamp/lamp-a/",
        "touchlamp/v1/lamp//touch",
    ],
)
def test_parse_names_the_problem(topic: str) -> None:
    with pytest.raises(ProtocolError) as raised:
        Topics().parse(topic)
    assert raised.value.topic == topic


@pytest.mark.parametrize("root", ["", "/x", "x/", "a/+/b", "a/#", "a//b"])
def test_bad_roots_are_refused(root: str) -> None:
    with pytest.raises(ProtocolError, match="not a topic root"):
        Topics(root)
