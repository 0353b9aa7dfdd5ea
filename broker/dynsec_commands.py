"""Mosquitto's dynamic-security commands as JSON-ready dicts, and reading its answers — pure,
no I/O (``BrokerAdmin`` in broker/admin.py sends them over a session).

Each builder returns the commands for one change, in the order the plugin must run them. A
message to ``$CONTROL/dynamic-security/v1`` is ``{"commands": [...]}``, each command tagged with
``correlationData`` to match its answer by (``tagged``), and cut to stay under the broker's
packet limit (``batches``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from touchlamp.broker.acl import (
    LAMP_CLIENT_TEXT,
    RELAY_CLIENT_TEXT,
    RELAY_ROLE,
    Role,
    lamp_role_name,
)
from touchlamp.protocol.topics import LAMP_ID_PATTERN

__all__ = [
    "CLIENT_NOT_FOUND",
    "ROLE_NOT_FOUND",
    "TAG_BYTES",
    "batches",
    "client_names",
    "client_of",
    "control_message",
    "create_lamp",
    "create_relay",
    "delete_lamp",
    "delete_relay",
    "delete_role",
    "get_client",
    "is_lamp",
    "is_relay",
    "lamp_names",
    "list_clients",
    "set_password",
    "subject",
    "tagged",
]

ROLE_NOT_FOUND = "Role not found"
CLIENT_NOT_FOUND = "Client not found"
# One control message's JSON stays under this, with room for the correlation data added to
# every command (broker max_packet_size: 64 KiB).
_MAX_MESSAGE_BYTES = 48_000
_ENVELOPE_BYTES = 100
# What ``tagged`` adds to every command: , "correlationData": "<32 hex digits>"
TAG_BYTES = len(json.dumps({"correlationData": uuid.uuid4().hex}))
_Item = TypeVar("_Item")


def create_lamp(lamp_id: str, password: str, role: Role) -> list[dict[str, object]]:
    """A lamp's role and its login, bound to the client id ``lamp_id``."""
    return [
        {"command": "createRole", **role.to_json()},
        {
            "command": "createClient",
            "username": lamp_id,
            "password": password,
            # Only this lamp may use this client id, and it may use no other.
            "clientid": lamp_id,
            "textname": LAMP_CLIENT_TEXT,
            "roles": [{"rolename": role.name}],
        },
    ]


def delete_lamp(lamp_id: str) -> list[dict[str, object]]:
    """A lamp's login and its role."""
    return [
        {"command": "deleteClient", "username": lamp_id},
        delete_role(lamp_role_name(lamp_id)),
    ]


def delete_role(name: str) -> dict[str, object]:
    return {"command": "deleteRole", "rolename": name}


def set_password(username: str, password: str) -> dict[str, object]:
    return {"command": "setClientPassword", "username": username, "password": password}


def create_relay(username: str, password: str) -> dict[str, object]:
    """A relay's login with the relay role, bound to the client id ``username``."""
    return {
        "command": "createClient",
        "username": username,
        "password": password,
        "clientid": username,
        "textname": RELAY_CLIENT_TEXT,
        "roles": [{"rolename": RELAY_ROLE}],
    }


def delete_relay(username: str) -> dict[str, object]:
    return {"command": "deleteClient", "username": username}


def list_clients(*, verbose: bool = False) -> dict[str, object]:
    """Every login (``verbose``: with its roles), in one answer."""
    if verbose:
        return {"command": "listClients", "verbose": True, "count": -1}
    return {"command": "listClients", "count": -1}


def get_client(username: str) -> dict[str, object]:
    return {"command": "getClient", "username": username}


def tagged(commands: Sequence[Mapping[str, object]]) -> list[dict[str, object]]:
    """``commands``, each with a fresh ``correlationData`` to match its answer by."""
    return [{**command, "correlationData": uuid.uuid4().hex} for command in commands]


def control_message(commands: Sequence[Mapping[str, object]]) -> str:
    """The JSON published to the control topic for (tagged) ``commands``."""
    return json.dumps({"commands": commands})


def batches(
    items: Sequence[_Item],
    *,
    size: Callable[[_Item], int] = lambda item: len(json.dumps(item)) + TAG_BYTES,
) -> list[list[_Item]]:
    """``items`` cut into runs whose JSON as sent (``size``: with the correlation data
    ``tagged`` adds) stays under ``_MAX_MESSAGE_BYTES``.

    The broker closes the connection of a client whose packet exceeds its ``max_packet_size``
    (touchlamp renders 64 KiB); 100 lamps' roles and clients are more than that.
    """
    runs: list[list[_Item]] = []
    used = 0
    for item in items:
        item_size = size(item) + 2  # and the separator
        if not runs or used + item_size > _MAX_MESSAGE_BYTES:
            runs.append([])
            used = _ENVELOPE_BYTES
        runs[-1].append(item)
        used += item_size
    return runs


def client_names(response: Mapping[str, Any]) -> set[str]:
    """The usernames in a ``listClients`` answer."""
    clients = _field(response, "data", "clients")
    return (
        {name for name in clients if isinstance(name, str)} if isinstance(clients, list) else set()
    )


def lamp_names(response: Mapping[str, Any]) -> list[str]:
    """The lamps in a verbose ``listClients`` answer, sorted."""
    clients = _field(response, "data", "clients")
    lamps = []
    for client in clients if isinstance(clients, list) else []:
        username = client.get("username") if isinstance(client, dict) else None
        if isinstance(username, str) and is_lamp(username, client):
            lamps.append(username)
    return sorted(lamps)


def client_of(response: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The login in a ``getClient`` answer; None when the broker has no such login."""
    if "error" in response:
        return None
    client = _field(response, "data", "client")
    return client if isinstance(client, dict) else {}


def is_lamp(username: str, client: Mapping[str, Any]) -> bool:
    """A lamp's login: a lamp id with that lamp's own role."""
    if not LAMP_ID_PATTERN.fullmatch(username):
        return False
    return lamp_role_name(username) in _role_names(client)


def is_relay(client: Mapping[str, Any] | None) -> bool:
    return client is not None and RELAY_ROLE in _role_names(client)


def subject(command: Mapping[str, object]) -> str:
    """Whom ``command`` is about, for an error message: `` for 'lamp-a'``, or nothing."""
    for key in ("username", "rolename"):
        if key in command:
            return f" for {command[key]!r}"
    return ""


def _role_names(client: Mapping[str, Any]) -> set[object]:
    roles = client.get("roles")
    return (
        {role.get("rolename") for role in roles if isinstance(role, dict)}
        if isinstance(roles, list)
        else set()
    )


def _field(document: Mapping[str, Any], *path: str) -> object:
    value: object = document
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value
