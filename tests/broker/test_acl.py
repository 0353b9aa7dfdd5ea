"""The broker's ACLs against a real Mosquitto: what a lamp, a relay and a stranger may do.

To show that a message did *not* arrive, a test sends a legitimate marker after the forbidden
one, through the same broker, and checks that the marker is all that came.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from tests.support.broker import BrokerFixture, Received
from tests.support.waiting import wait_until
from touchlamp.broker.acl import CONTROL_TOPIC, RESPONSE_TOPIC
from touchlamp.protocol.topics import Kind

NOT_AUTHORIZED = "Not authorized"


def _payload(expected: bytes) -> Callable[[Received], bool]:
    return lambda message: message.payload == expected


# -- allowed flows ---------------------------------------------------------------------------


def test_a_lamps_touch_availability_and_pair_request_reach_the_relay(broker: BrokerFixture) -> None:
    topics = broker.topics
    relay = broker.connect_relay()
    for filter_ in (
        topics.every(Kind.TOUCH),
        topics.every(Kind.AVAILABILITY),
        topics.every(Kind.PAIR),
    ):
        assert not relay.subscribe(filter_).is_failure
    lamp = broker.connect_lamp("lamp-a")

    for topic in (topics.touch("lamp-a"), topics.availability("lamp-a"), topics.pair("lamp-a")):
        assert not lamp.publish(topic, b"from lamp-a").is_failure

    assert [m.topic for m in relay.messages(3)] == [
        topics.touch("lamp-a"),
        topics.availability("lamp-a"),
        topics.pair("lamp-a"),
    ]


def test_the_relay_reaches_a_lamps_glow_group_and_pair_response(broker: BrokerFixture) -> None:
    topics = broker.topics
    lamp = broker.connect_lamp("lamp-a")
    for topic in (topics.glow("lamp-a"), topics.group("lamp-a"), topics.pair_response("lamp-a")):
        assert not lamp.subscribe(topic).is_failure
    relay = broker.connect_relay()

    for topic in (topics.glow("lamp-a"), topics.group("lamp-a"), topics.pair_response("lamp-a")):
        assert not relay.publish(topic, b"for lamp-a").is_failure

    assert [m.topic for m in lamp.messages(3)] == [
        topics.glow("lamp-a"),
        topics.group("lamp-a"),
        topics.pair_response("lamp-a"),
    ]


def test_two_relays_on_a_shared_subscription_split_the_touches(broker: BrokerFixture) -> None:
    # Two relay processes sharing the relay login, each with its own client id.
    relays = [broker.connect_relay(client_id="relay-1"), broker.connect_relay(client_id="relay-2")]
    shared = f"$share/relays/{broker.topics.every(Kind.TOUCH)}"
    for relay in relays:
        assert not relay.subscribe(shared).is_failure
    lamp = broker.connect_lamp("lamp-a")

    sent = [f"touch {n}".encode() for n in range(20)]
    for payload in sent:
        lamp.publish(broker.topics.touch("lamp-a"), payload)

    wait_until(lambda: sum(r.pending() for r in relays) >= len(sent), what="all touches")
    first, second = (relay.messages(relay.pending()) for relay in relays)
    assert first, "relay-1 got no touch"
    assert second, "relay-2 got no touch"
    assert sorted(m.payload for m in first + second) == sorted(sent)


# -- denied ----------------------------------------------------------------------------------


def test_a_lamp_cannot_publish_on_another_lamps_touch_topic(broker: BrokerFixture) -> None:
    topics = broker.topics
    relay = broker.connect_relay()
    relay.subscribe(topics.every(Kind.TOUCH))
    lamp_a = broker.connect_lamp("lamp-a")
    lamp_b = broker.connect_lamp("lamp-b")

    assert str(lamp_a.publish(topics.touch("lamp-b"), b"forged by lamp-a")) == NOT_AUTHORIZED
    lamp_b.publish(topics.touch("lamp-b"), b"real touch of lamp-b")

    arrived = relay.messages_until(_payload(b"real touch of lamp-b"))
    assert [m.payload for m in arrived] == [b"real touch of lamp-b"]


def test_a_lamp_cannot_write_what_only_the_relay_writes(broker: BrokerFixture) -> None:
    topics = broker.topics
    lamp_a = broker.connect_lamp("lamp-a")
    lamp_a.subscribe(topics.glow("lamp-a"))
    lamp_b = broker.connect_lamp("lamp-b")
    relay = broker.connect_relay()

    for topic in (topics.glow("lamp-a"), topics.group("lamp-a"), topics.glow("lamp-b")):
        assert str(lamp_b.publish(topic, b"fake")) == NOT_AUTHORIZED
    assert str(lamp_a.publish(topics.glow("lamp-a"), b"self-glow")) == NOT_AUTHORIZED
    relay.publish(topics.glow("lamp-a"), b"marker")

    assert [m.payload for m in lamp_a.messages_until(_payload(b"marker"))] == [b"marker"]


def test_a_lamp_cannot_subscribe_to_everything_or_to_another_lamp(broker: BrokerFixture) -> None:
    topics = broker.topics
    lamp_a = broker.connect_lamp("lamp-a")
    broker.add_lamp("lamp-b")
    forbidden = [
        "#",
        "touchlamp/#",
        f"{topics.root}/#",
        f"{topics.root}/lamp/+/glow",
        topics.glow("lamp-b"),
        topics.touch("lamp-b"),
        topics.touch("lamp-a"),  # its own touches are for the relay only
        f"$share/x/{topics.every(Kind.TOUCH)}",
        "$SYS/#",
        "$CONTROL/dynamic-security/#",
    ]
    assert {topic: str(lamp_a.subscribe(topic)) for topic in forbidden} == dict.fromkeys(
        forbidden, NOT_AUTHORIZED
    )
    assert not lamp_a.subscribe(topics.glow("lamp-a")).is_failure

    relay = broker.connect_relay()
    relay.publish(topics.glow("lamp-b"), b"for lamp-b only")
    relay.publish(topics.glow("lamp-a"), b"marker")

    assert [m.payload for m in lamp_a.messages_until(_payload(b"marker"))] == [b"marker"]


def test_the_relay_cannot_read_glows_or_write_touches(broker: BrokerFixture) -> None:
    topics = broker.topics
    relay = broker.connect_relay()
    assert str(relay.subscribe(topics.every(Kind.GLOW))) == NOT_AUTHORIZED
    assert str(relay.subscribe("#")) == NOT_AUTHORIZED
    assert str(relay.publish(topics.touch("lamp-a"), b"forged")) == NOT_AUTHORIZED


def test_anonymous_clients_are_refused(broker: BrokerFixture) -> None:
    stranger = broker.probe(username=None, password=None)
    assert stranger.connect().is_failure


def test_a_wrong_password_is_refused(broker: BrokerFixture) -> None:
    broker.add_lamp("lamp-a")
    impostor = broker.probe(username="lamp-a", password="guessed", client_id="lamp-a")
    assert impostor.connect().is_failure
    relay = broker.probe(username=broker.relay_username, password="guessed", client_id="relay")
    assert relay.connect().is_failure


def test_nobody_else_can_use_a_lamps_client_id(broker: BrokerFixture) -> None:
    lamp_a = broker.connect_lamp("lamp-a")
    password_b = broker.add_lamp("lamp-b")

    as_other_lamp = broker.probe(username="lamp-b", password=password_b, client_id="lamp-a")
    assert as_other_lamp.connect().is_failure
    # ... and a lamp cannot use any other client id either.
    elsewhere = broker.probe(username="lamp-b", password=password_b, client_id="lamp-b-2")
    assert elsewhere.connect().is_failure

    # lamp-a's session was not taken over: it still receives its glows.
    lamp_a.subscribe(broker.topics.glow("lamp-a"))
    broker.connect_relay().publish(broker.topics.glow("lamp-a"), b"still yours")
    assert [m.payload for m in lamp_a.messages(1)] == [b"still yours"]


def test_removing_a_lamp_disconnects_it_at_once_and_for_good(broker: BrokerFixture) -> None:
    password = broker.add_lamp("lamp-a")
    lamp = broker.connect_lamp("lamp-a", password=password)

    broker.admin.remove_lamp("lamp-a")

    assert str(lamp.wait_disconnected()) == "Administrative action"
    assert lamp.connect().is_failure
    assert "lamp-a" not in broker.admin.list_lamps()


def test_a_new_password_disconnects_the_lamp_and_only_the_new_one_works(
    broker: BrokerFixture,
) -> None:
    old = broker.add_lamp("lamp-a")
    lamp = broker.connect_lamp("lamp-a", password=old)

    new = broker.admin.set_lamp_password("lamp-a")

    assert str(lamp.wait_disconnected()) == "Administrative action"
    assert lamp.connect().is_failure
    broker.connect_lamp("lamp-a", password=new)  # asserts that the new password is accepted


# -- what Mosquitto 2.0.11 does not do (why each lamp has its own role) ----------------------


def test_percent_u_patterns_do_not_work_in_dynamic_security_acls(broker: BrokerFixture) -> None:
    """If this starts failing, Mosquitto learnt ``%u``: one shared lamp role would then do."""
    topics = broker.topics
    credentials = broker.managed.credentials
    admin = broker.probe(username=credentials.admin_username, password=credentials.admin_password)
    admin.connect()
    admin.subscribe(RESPONSE_TOPIC)
    pattern = f"{topics.root}/lamp/%u/touch"
    commands = [
        {"command": "createRole", "rolename": "by-pattern",
         "acls": [{"acltype": "publishClientSend", "topic": pattern, "allow": True}]},
        {"command": "createClient", "username": "lamp-p", "password": "pattern-test",
         "clientid": "lamp-p", "roles": [{"rolename": "by-pattern"}]},
    ]  # fmt: skip
    admin.publish(CONTROL_TOPIC, json.dumps({"commands": commands}))
    (answer,) = admin.messages(1)
    assert all("error" not in r for r in json.loads(answer.payload)["responses"])
    lamp = broker.connect_lamp("lamp-p", password="pattern-test")

    assert str(lamp.publish(topics.touch("lamp-p"), b"own touch")) == NOT_AUTHORIZED
