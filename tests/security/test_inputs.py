"""Hostile input from the network: oversize packets at the broker, malformed payloads and
MQTT 5 properties at the live relay (hypothesis). The legitimate pair keeps exchanging touches.
"""

from __future__ import annotations

import json
import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.security.world import Mischief, SecureWorld
from tests.support.raw_mqtt import RawClient, connect_packet, publish_packet, remaining_length
from tests.support.relay import relay_metrics
from touchlamp.protocol import (
    MAX_PAYLOAD_BYTES,
    Topics,
    Touch,
    decode_pair_request,
    decode_touch,
    encode,
)
from touchlamp.server.metrics import MetricsServer

_ACCEPTED = 0


def test_an_oversize_publish_disconnects_the_sender_only(world: SecureWorld) -> None:
    limit = world.broker.managed.settings.limits.max_packet_size
    password = world.enroll("lamp-big", in_legit_group=True)
    with RawClient(world.broker.host, world.broker.port) as raw:
        login = connect_packet(
            client_id=b"lamp-big", username=b"lamp-big", password=password.encode()
        )
        raw.send(login)
        assert raw.connack() == _ACCEPTED
        raw.send(publish_packet(world.topics.touch("lamp-big"), b"{" * (limit + 1)))
        world.exchange()  # while the broker deals with it
        assert raw.closed(), "the broker kept a client that sent more than max_packet_size"
    world.exchange()
    world.assert_only_legit_glows()
    assert world.relay.connected


def test_an_oversize_packet_before_login_is_refused_without_reading_it(
    world: SecureWorld,
) -> None:
    with RawClient(world.broker.host, world.broker.port) as raw:
        # A CONNECT that claims 200 MB: the broker must not wait for (or allocate) it.
        raw.send(b"\x10" + remaining_length(200_000_000) + b"\x00" * 1024)
        assert raw.closed()
    world.exchange()


def test_a_valid_payload_padded_past_the_protocols_limit_is_dropped_for_its_size(
    world: SecureWorld, caplog: pytest.LogCaptureFixture
) -> None:
    """Under the broker's packet limit but over the protocol's: a touch and a pairing request
    that are valid but for trailing JSON whitespace. The relay drops both for their size —
    counted in /metrics, the reason logged — and the pair's lamps see nothing of them."""
    password = world.enroll("lamp-big", in_legit_group=True)
    attacker = world.mischief("lamp-big", password)
    topics = world.topics
    touch = encode(Touch(seq=1, stream=7, color="#ff8800", ts=1))
    request = b'{"action": "status"}'
    padded_touch, padded_request = (
        payload.ljust(MAX_PAYLOAD_BYTES + 1, b" ") for payload in (touch, request)
    )
    # Valid but for the size: the same messages unpadded decode, and the padding is whitespace.
    decode_touch(topics.touch("lamp-big"), touch)
    decode_pair_request(topics.pair("lamp-big"), request)
    assert json.loads(padded_touch) == json.loads(touch)
    metrics = MetricsServer(
        host="127.0.0.1", port=0, registry=world.relay.metrics.registry, healthy=lambda: True
    )
    metrics.start()
    try:
        before = relay_metrics(metrics.port)
        with caplog.at_level(logging.WARNING, logger="touchlamp"):
            attacker.publish(topics.touch("lamp-big"), padded_touch)
            attacker.publish(
                topics.pair("lamp-big"),
                padded_request,
                response_topic=topics.pair_response("lamp-big"),  # else dropped for that
                correlation=b"1",
            )
            world.exchange()
        after = relay_metrics(metrics.port)
    finally:
        metrics.stop()
    dropped = 'touchlamp_relay_touches_dropped_total{reason="bad-payload"}'
    bad_pairs = 'touchlamp_relay_bad_messages_total{kind="pair"}'
    assert after[dropped] - before[dropped] == 1
    assert after[bad_pairs] - before.get(bad_pairs, 0.0) == 1  # the first one makes the label
    too_big = f"payload of {MAX_PAYLOAD_BYTES + 1} bytes is over the limit of {MAX_PAYLOAD_BYTES}"
    said = [record.getMessage() for record in caplog.records]
    assert [message for message in said if too_big in message] == [
        message for message in said if "dropped a bad message" in message
    ]
    assert len([message for message in said if too_big in message]) == 2, said
    world.assert_only_legit_glows()
    assert world.relay.connected


def test_the_relay_never_answers_a_request_on_another_lamps_topic(world: SecureWorld) -> None:
    topics = world.topics
    victim = world.broker.connect_lamp("lamp-v")
    for own in (topics.pair_response("lamp-v"), topics.glow("lamp-v")):
        assert not victim.subscribe(own).is_failure
    attacker = world.mischief("lamp-m", world.enroll("lamp-m"))
    for elsewhere in (topics.pair_response("lamp-v"), topics.glow("lamp-v")):
        for request in (b'{"action": "status"}', b'{"action": "create"}', b"junk"):
            reason = attacker.publish(
                topics.pair("lamp-m"), request, response_topic=elsewhere, correlation=b"x"
            )
            assert reason is not None
            assert not reason.is_failure
    world.exchange()
    world.broker.connect_relay().publish(topics.glow("lamp-v"), b"marker")
    arrived = victim.messages_until(lambda message: message.payload == b"marker")
    assert [message.payload for message in arrived] == [b"marker"]


# -- malformed payloads and properties at the live relay -------------------------------------

_FRAGMENTS = ["\x1b[2J", "\x1b]0;x\x07", "\n", "\r", "\u202e", "\x00", "\x9b", "a", "é", "/"]
_hostile_text = st.lists(st.sampled_from(_FRAGMENTS) | st.characters(), max_size=20).map("".join)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | _hostile_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_hostile_text, inner, max_size=4),
    max_leaves=10,
)
_almost_pair = st.fixed_dictionaries(
    {"action": st.sampled_from(["create", "join", "leave", "status", "color", "dance", ""])},
    optional={
        "code": _hostile_text,
        "color": _hostile_text,
        "name": _hostile_text,
        "members": st.lists(_hostile_text, max_size=3),
    },
)
_payloads = st.one_of(
    st.binary(max_size=400),
    _hostile_text.map(str.encode),
    _json_values.map(lambda value: json.dumps(value).encode()),
    _almost_pair.map(lambda value: json.dumps(value).encode()),
    st.integers(min_value=1, max_value=20_000).map(lambda depth: b"[" * depth),
    st.integers(min_value=4_097, max_value=30_000).map(lambda size: b" " * size),
)


class _Live:
    """One relay and one attacker shared by every example (starting them is slow)."""

    def __init__(self, world: SecureWorld, attacker: Mischief) -> None:
        self.world, self.attacker = world, attacker


@pytest.fixture
def live(world: SecureWorld) -> _Live:
    # A member of the legitimate pair's own group: a lamp owner with a modified lamp.
    password = world.enroll("lamp-m", in_legit_group=True)
    return _Live(world, world.mischief("lamp-m", password))


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    payload=_payloads,
    kind=st.sampled_from(["touch", "pair", "availability"]),
    response_topic=st.none()
    | st.sampled_from(["own", "lamp-a pair/response", "lamp-a glow", "#", "$SYS/x"])
    | _hostile_text.filter(bool),
    correlation=st.none() | st.binary(max_size=64),
)
def test_malformed_messages_never_disturb_the_relay_or_other_lamps(
    live: _Live,
    payload: bytes,
    kind: str,
    response_topic: str | None,
    correlation: bytes | None,
) -> None:
    world = live.world
    topics: Topics = world.topics
    topic = {
        "touch": topics.touch("lamp-m"),
        "pair": topics.pair("lamp-m"),
        "availability": topics.availability("lamp-m"),
    }[kind]
    named = {
        "own": topics.pair_response("lamp-m"),
        "lamp-a pair/response": topics.pair_response("lamp-a"),
        "lamp-a glow": topics.glow("lamp-a"),
    }
    resolved = named.get(response_topic, response_topic) if response_topic else None
    # The broker takes it (lamp-m's own topic), or drops lamp-m for a malformed property such
    # as a wildcard response topic; either way the relay and the other lamps go on.
    reason = live.attacker.publish(topic, payload, response_topic=resolved, correlation=correlation)
    assert reason is None or not reason.is_failure, reason
    world.exchange()
    world.assert_only_legit_glows()
    assert world.relay.connected
    assert world.legit_online()
