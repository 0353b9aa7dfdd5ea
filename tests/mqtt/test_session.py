"""The synchronous session (mqtt/session.py) on a real Mosquitto: request/response by
correlation data, and what ``refused`` says when the login is wrong."""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes

from tests.support.broker import BrokerFixture
from touchlamp.mqtt.client import new_client, properties
from touchlamp.mqtt.session import NoAnswerError, Session
from touchlamp.protocol import Topics

LAMP = "lamp-s"


def _responder(broker: BrokerFixture, topics: Topics, stale_first: bool) -> mqtt.Client:
    """A relay-side client that answers each request on the request's response topic, first
    (with ``stale_first``) with an answer to some other request."""
    username, password = broker.relay_login("test-responder")
    client = new_client(
        "test-responder",
        username=username,
        password=password,
        log_as="tests.mqtt.responder.paho",
    )
    subscribed = threading.Event()

    def on_message(client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        response_topic = str(getattr(message.properties, "ResponseTopic", ""))
        answer = properties(PacketTypes.PUBLISH)
        if stale_first:
            answer.CorrelationData = b"someone else's request"
            client.publish(response_topic, b"stale", qos=1, properties=answer)
        answer.CorrelationData = getattr(message.properties, "CorrelationData", b"")
        client.publish(response_topic, b"answer:" + message.payload, qos=1, properties=answer)

    client.on_message = on_message
    client.on_subscribe = lambda *_args: subscribed.set()
    client.on_connect = lambda c, *_args: c.subscribe(topics.pair(LAMP), qos=1)
    client.connect(broker.host, broker.port)
    client.loop_start()
    assert subscribed.wait(10), "the responder did not subscribe"
    return client


@pytest.mark.parametrize("stale_first", [False, True])
def test_a_request_gets_the_answer_carrying_its_correlation_data(
    broker: BrokerFixture, stale_first: bool
) -> None:
    topics = Topics()
    password = broker.add_lamp(LAMP)
    responder = _responder(broker, topics, stale_first)
    try:
        client = new_client(LAMP, username=LAMP, password=password, log_as="tests.mqtt.paho")
        with Session.open(client, host=broker.host, port=broker.port, timeout=10) as session:
            assert session.refused is None
            answer = session.request(topics.pair(LAMP), topics.pair_response(LAMP), b"status")
        assert answer == b"answer:status"
    finally:
        responder.disconnect()
        responder.loop_stop()


def test_a_refused_login_is_said_and_a_request_without_answer_times_out(
    broker: BrokerFixture,
) -> None:
    topics = Topics()
    password = broker.add_lamp(LAMP)
    wrong = new_client(LAMP, username=LAMP, password="wrong", log_as="tests.mqtt.paho")
    with Session.open(wrong, host=broker.host, port=broker.port, timeout=10) as session:
        assert session.refusal is not None
        assert session.refused == "Not authorized"
    right = new_client(LAMP, username=LAMP, password=password, log_as="tests.mqtt.paho")
    with (
        Session.open(right, host=broker.host, port=broker.port, timeout=1) as session,
        pytest.raises(NoAnswerError, match="did not answer a pairing request within 1 s"),
    ):
        session.request(
            topics.pair(LAMP), topics.pair_response(LAMP), b"?", what="a pairing request"
        )
