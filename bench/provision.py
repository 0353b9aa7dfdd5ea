"""A benchmark's own broker login: an observer that may watch both touches and glows.

Lamps are created with ``BrokerAdmin.add_lamps`` (bench/site.py), as an operator would.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from touchlamp.broker.acl import (
    CONTROL_TOPIC,
    RESPONSE_TOPIC,
    Acl,
    Role,
)
from touchlamp.broker.launcher import ManagedBroker
from touchlamp.broker.passwords import generate_password

__all__ = ["ProvisionError", "add_observer"]


class ProvisionError(RuntimeError):
    """The broker refused or did not answer a batch of lamp creations."""


def add_observer(
    broker: ManagedBroker, username: str, *, filters: list[str], timeout: float = 30.0
) -> str:
    """A login that may only watch ``filters`` (a benchmark's timing sniffer); its password.

    Neither lamps nor the relay may read every kind of topic, so a client that timestamps both a
    touch and its glow on the wire needs a role of its own.
    """
    password = generate_password()
    role = Role(
        name=f"bench-observer-{username}",
        acls=tuple(
            Acl(acltype, topic)
            for topic in filters
            for acltype in ("subscribePattern", "publishClientReceive", "unsubscribePattern")
        ),
    )
    with _admin_client(broker, timeout=timeout) as (client, answers):
        _send(
            client,
            answers,
            [
                {"command": "createRole", **role.to_json()},
                {
                    "command": "createClient",
                    "username": username,
                    "password": password,
                    "roles": [{"rolename": role.name}],
                },
            ],
            timeout=timeout,
        )
    return password


@contextmanager
def _admin_client(
    broker: ManagedBroker, *, timeout: float
) -> Iterator[tuple[mqtt.Client, queue.SimpleQueue[bytes]]]:
    """The admin login, subscribed to the plugin's answers."""
    answers: queue.SimpleQueue[bytes] = queue.SimpleQueue()
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"bench-admin-{uuid.uuid4().hex[:8]}",
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    credentials = broker.credentials
    client.username_pw_set(credentials.admin_username, credentials.admin_password)
    subscribed = threading.Event()
    client.on_message = lambda _c, _u, message: answers.put(bytes(message.payload))
    client.on_subscribe = lambda *_args: subscribed.set()
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        client.subscribe(RESPONSE_TOPIC, qos=1)
        if not subscribed.wait(timeout):
            raise ProvisionError(f"no SUBACK for {RESPONSE_TOPIC} within {timeout:g} s")
        yield client, answers
    finally:
        client.disconnect()
        client.loop_stop()


def _send(
    client: mqtt.Client,
    answers: queue.SimpleQueue[bytes],
    commands: list[dict[str, object]],
    *,
    timeout: float,
) -> None:
    client.publish(CONTROL_TOPIC, json.dumps({"commands": commands}), qos=1)
    _expect(answers, len(commands), timeout=timeout)


def _expect(answers: queue.SimpleQueue[bytes], count: int, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    seen = 0
    while seen < count:
        try:
            payload = answers.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise ProvisionError(
                f"the dynamic-security plugin answered {seen} of {count} commands within "
                f"{timeout:g} s: is the broker overloaded?"
            ) from None
        for response in json.loads(payload).get("responses", []):
            if "error" in response:
                raise ProvisionError(
                    f"the broker refused {response.get('command')}: {response['error']}"
                )
            seen += 1
