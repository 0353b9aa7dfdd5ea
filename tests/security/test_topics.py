"""What an enrolled lamp (an owner, or whoever stole its credentials) can reach on the broker:
its own six topics, nothing else — checked against the real broker with the relay running.

"Nothing arrived" is shown with a marker: after the attack, something legitimate is sent through
the same broker, and it must be the only thing that came.
"""

from __future__ import annotations

import json

from tests.security.world import SecureWorld
from tests.support.broker import MqttProbe
from touchlamp.broker.acl import CONTROL_TOPIC, RESPONSE_TOPIC
from touchlamp.protocol import Kind, Touch, encode

NOT_AUTHORIZED = "Not authorized"


def test_a_lamp_cannot_publish_on_another_lamps_topics(world: SecureWorld) -> None:
    topics = world.topics
    attacker = world.broker.connect_lamp("lamp-x")
    forged_touch = encode(Touch(seq=999, stream=1, color="#ff0000", ts=1))
    attempts = {
        topics.touch("lamp-a"): forged_touch,  # a touch "from" lamp-a
        topics.availability("lamp-a"): b"offline",  # lamp-a "went offline" (retained)
        topics.pair("lamp-a"): b'{"action": "leave"}',  # lamp-a "leaves" its group
        topics.glow("lamp-b"): b"{}",  # a glow straight to lamp-b
        topics.group("lamp-b"): b'{"group": null, "members": []}',  # lamp-b "unpaired"
        topics.pair_response("lamp-b"): b"{}",
        # Its own relay-only topics as well: a lamp never writes a glow or a group state.
        topics.glow("lamp-x"): b"{}",
        topics.group("lamp-x"): b"{}",
    }
    for topic, payload in attempts.items():
        assert str(attacker.publish(topic, payload)) == NOT_AUTHORIZED, topic
        world.exchange()  # during the attack

    world.exchange()
    world.assert_only_legit_glows()
    assert world.legit_online(), "a forged 'offline' reached the relay"
    group = world.store.group_of("lamp-a")
    assert group is not None
    assert [member.id for member in group.members] == ["lamp-a", "lamp-b"]


def test_wildcard_system_and_control_subscriptions_are_refused(world: SecureWorld) -> None:
    topics = world.topics
    attacker = world.broker.connect_lamp("lamp-x")
    forbidden = [
        "#",
        "touchlamp/#",
        "+/+/lamp/+/glow",
        f"{topics.root}/#",
        f"{topics.root}/lamp/+/touch",
        f"{topics.root}/lamp/lamp-a/#",
        topics.glow("lamp-a"),
        topics.touch("lamp-x"),  # its own touches are for the relay only
        f"$share/x/{topics.every(Kind.TOUCH)}",
        "$share/x/#",
        "$SYS/#",
        "$SYS/broker/clients/connected",
        "$CONTROL/#",
        RESPONSE_TOPIC,
    ]
    refused = {topic: str(attacker.subscribe(topic)) for topic in forbidden}
    assert refused == dict.fromkeys(forbidden, NOT_AUTHORIZED)

    assert not attacker.subscribe(topics.glow("lamp-x")).is_failure
    world.exchange()  # legitimate touches and glows flow while the attacker listens
    world.broker.connect_relay().publish(topics.glow("lamp-x"), b"marker")
    arrived = attacker.messages_until(lambda message: message.payload == b"marker")
    assert [message.payload for message in arrived] == [b"marker"]


def test_a_lamp_cannot_administer_the_broker(world: SecureWorld) -> None:
    attacker = world.broker.connect_lamp("lamp-x")
    command = {
        "commands": [
            {"command": "createClient", "username": "evil", "password": "evil-password"},
            {"command": "addClientRole", "username": "lamp-x", "rolename": "touchlamp-relay"},
        ]
    }
    assert str(attacker.publish(CONTROL_TOPIC, json.dumps(command))) == NOT_AUTHORIZED
    world.exchange()

    evil = MqttProbe(
        host=world.broker.host,
        port=world.broker.port,
        username="evil",
        password="evil-password",
        client_id="evil",
    )
    assert evil.connect().is_failure
    evil.close()
    # lamp-x did not become a relay: touches are still not its to read.
    assert str(attacker.subscribe(world.topics.every(Kind.TOUCH))) == NOT_AUTHORIZED
    assert world.broker.admin.list_lamps() == ["lamp-a", "lamp-b", "lamp-x"]
    world.exchange()
