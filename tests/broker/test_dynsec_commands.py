"""The dynamic-security commands and answers on their own, without a broker
(broker/dynsec_commands.py; tests/broker/test_admin.py runs them against Mosquitto)."""

from __future__ import annotations

import json

from touchlamp.broker import dynsec_commands as dynsec
from touchlamp.broker.acl import RELAY_ROLE, lamp_role, lamp_role_name
from touchlamp.protocol.topics import Topics


def test_a_lamps_login_is_bound_to_its_own_client_id_and_role() -> None:
    role = lamp_role(Topics("touchlamp/v1"), "lamp-a")
    create_role, create_client = dynsec.create_lamp("lamp-a", "secret", role)
    assert create_role["command"] == "createRole"
    assert create_role["rolename"] == role.name
    assert create_client["clientid"] == "lamp-a"
    assert create_client["roles"] == [{"rolename": role.name}]
    assert [command["command"] for command in dynsec.delete_lamp("lamp-a")] == [
        "deleteClient",
        "deleteRole",
    ]


def test_batches_keep_every_message_under_the_limit_and_the_order() -> None:
    commands = [dynsec.delete_role(f"lamp:lamp-{number:04d}") for number in range(3000)]
    runs = dynsec.batches(commands)
    assert len(runs) > 1
    assert [command for run in runs for command in run] == commands
    assert max(len(dynsec.control_message(dynsec.tagged(run))) for run in runs) < 48_000


def test_each_command_gets_its_own_correlation_data() -> None:
    commands = dynsec.tagged([dynsec.get_client("lamp-a"), dynsec.get_client("lamp-b")])
    tags = {command["correlationData"] for command in commands}
    assert len(tags) == 2
    assert json.loads(dynsec.control_message(commands)) == {"commands": commands}


def test_answers_are_read_as_lamps_relays_and_missing_logins() -> None:
    lamp = {"username": "lamp-a", "roles": [{"rolename": lamp_role_name("lamp-a")}]}
    relay = {"username": "relay-2", "roles": [{"rolename": RELAY_ROLE}]}
    impostor = {"username": "lamp-b", "roles": [{"rolename": lamp_role_name("lamp-a")}]}
    listing = {"data": {"clients": [relay, impostor, lamp, "junk"]}}
    assert dynsec.lamp_names(listing) == ["lamp-a"]
    assert dynsec.client_names({"data": {"clients": ["admin", "lamp-a", 3]}}) == {
        "admin",
        "lamp-a",
    }
    assert dynsec.is_relay(relay)
    assert not dynsec.is_relay(lamp)
    assert dynsec.client_of({"command": "getClient", "error": "Client not found"}) is None
    assert dynsec.client_of({"data": {"client": relay}}) == relay
    assert dynsec.subject(dynsec.get_client("lamp-a")) == " for 'lamp-a'"
