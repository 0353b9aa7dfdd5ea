"""Creating many lamps on the broker at once: dynamic-security commands in batches.

``BrokerAdmin.add_lamp`` makes three round trips per lamp (does it exist? drop a stale role;
create role and client), which is right for an operator adding one lamp and slow for a
benchmark adding a thousand. Here each control message carries ``createRole`` + ``createClient``
for ``batch`` lamps, with the very role and client text that ``BrokerAdmin`` uses
(``touchlamp.broker.acl``), so the lamps are indistinguishable from ones added by
``touchlamp broker lamp add``. The broker's state must be fresh: nothing is checked or replaced.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from touchlamp.broker.acl import CONTROL_TOPIC, LAMP_CLIENT_TEXT, RESPONSE_TOPIC, lamp_role
from touchlamp.broker.launcher import ManagedBroker
from touchlamp.broker.passwords import generate_password

__all__ = ["ProvisionError", "Provisioned", "add_lamps"]


class ProvisionError(RuntimeError):
    """The broker refused or did not answer a batch of lamp creations."""


@dataclass(frozen=True, slots=True)
class Provisioned:
    """Lamp id → password, and how long the broker took (seconds) to create them."""

    passwords: dict[str, str]
    seconds: float


def add_lamps(
    broker: ManagedBroker, lamp_ids: list[str], *, batch: int = 100, timeout: float = 120.0
) -> Provisioned:
    """Create ``lamp_ids`` on ``broker`` through its admin login, ``batch`` lamps per message."""
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
        passwords: dict[str, str] = {}
        started = time.monotonic()
        for first in range(0, len(lamp_ids), batch):
            commands: list[dict[str, object]] = []
            for lamp_id in lamp_ids[first : first + batch]:
                password = generate_password()
                passwords[lamp_id] = password
                role = lamp_role(broker.topics, lamp_id)
                commands += [
                    {"command": "createRole", **role.to_json()},
                    {
                        "command": "createClient",
                        "username": lamp_id,
                        "password": password,
                        "clientid": lamp_id,
                        "textname": LAMP_CLIENT_TEXT,
                        "roles": [{"rolename": role.name}],
                    },
                ]
            client.publish(CONTROL_TOPIC, json.dumps({"commands": commands}), qos=1)
            _expect(answers, len(commands), timeout=timeout)
        return Provisioned(passwords=passwords, seconds=time.monotonic() - started)
    finally:
        client.disconnect()
        client.loop_stop()


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
