"""``BrokerAdmin`` against a real broker: what it does, and how it says no."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.support.broker import BrokerFixture
from tests.support.ports import free_port
from touchlamp.broker.acl import CONTROL_TOPIC, RESPONSE_TOPIC
from touchlamp.broker.admin import BrokerAdmin
from touchlamp.broker.dynsec_commands import control_message, tagged
from touchlamp.broker.errors import BrokerAdminError, BrokerStateError
from touchlamp.broker.passwords import PASSWORD_BITS
from touchlamp.broker.state import import_lamps
from touchlamp.cli import main
from touchlamp.config.relay import RelaySettings
from touchlamp.protocol.errors import ProtocolError


def test_lamps_are_listed_without_the_admin_and_relay_users(broker: BrokerFixture) -> None:
    for lamp_id in ("lamp-b", "lamp-a", "kitchen-lamp"):
        broker.add_lamp(lamp_id)
    broker.admin.add_relay("relay-2")

    assert broker.admin.list_lamps() == ["kitchen-lamp", "lamp-a", "lamp-b"]


def test_each_lamp_gets_its_own_strong_password(broker: BrokerFixture) -> None:
    first, second = broker.add_lamp("lamp-a"), broker.add_lamp("lamp-b")
    assert first != second
    assert len(first) * 6 >= PASSWORD_BITS  # URL-safe base64: 6 bits per character


def test_adding_a_lamp_twice_is_refused_and_keeps_the_first_password(
    broker: BrokerFixture,
) -> None:
    password = broker.add_lamp("lamp-a")
    with pytest.raises(BrokerAdminError, match="'lamp-a' already exists"):
        broker.add_lamp("lamp-a")
    broker.connect_lamp("lamp-a", password=password)


def test_many_lamps_are_added_in_a_few_messages_and_each_can_log_in(
    broker: BrokerFixture,
) -> None:
    lamp_ids = [f"lamp-{number:03d}" for number in range(250)]  # several 40 KB messages
    passwords = broker.admin.add_lamps(lamp_ids)

    assert sorted(passwords) == lamp_ids
    assert len(set(passwords.values())) == len(lamp_ids)
    assert broker.admin.list_lamps() == lamp_ids
    for lamp_id in (lamp_ids[0], lamp_ids[-1]):
        broker.connect_lamp(lamp_id, password=passwords[lamp_id])


def test_every_message_of_a_large_add_fits_the_brokers_packet_limit(
    broker: BrokerFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2,000 lamps: the role deletions alone are ~200 KB once tagged; each message must stay
    under Mosquitto's max_packet_size (64 KiB rendered), or the broker drops the connection."""
    admin = broker.admin
    sizes: list[int] = []

    def measure(
        commands: Sequence[Mapping[str, object]], *, tolerate: Iterable[str] = ()
    ) -> list[Mapping[str, Any]]:
        del tolerate  # this stand-in for the plugin refuses nothing
        sizes.append(len(control_message(tagged(commands))))
        if commands[0]["command"] == "listClients":
            return [{"command": "listClients", "data": {"clients": []}}]
        return [{"command": command["command"]} for command in commands]

    monkeypatch.setattr(admin, "_run", measure)
    with admin:
        admin.add_lamps([f"lamp-{number:04d}" for number in range(2000)])
    assert len(sizes) > 10
    assert max(sizes) < broker.managed.settings.limits.max_packet_size - 1024


def test_adding_many_lamps_is_all_or_none(broker: BrokerFixture) -> None:
    broker.add_lamp("lamp-b")
    with pytest.raises(BrokerAdminError, match="'lamp-b' already exists on the broker"):
        broker.admin.add_lamps(["lamp-a", "lamp-b", "lamp-c"])
    with pytest.raises(BrokerAdminError, match="more than once: lamp-a"):
        broker.admin.add_lamps(["lamp-a", "lamp-c", "lamp-a"])
    with pytest.raises(ProtocolError, match="not a lamp id"):
        broker.admin.add_lamps(["lamp-a", "Lamp C"])
    assert broker.admin.list_lamps() == ["lamp-b"]


def test_a_batch_the_broker_refuses_half_way_is_undone(
    broker: BrokerFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second message fails (a role the first did not delete appears meanwhile): the lamps
    of the first message are removed again, so no lamp exists whose password was never shown."""
    lamp_ids = [f"lamp-{number:03d}" for number in range(150)]
    admin = broker.admin
    original_run = admin._run  # the plugin itself, with a refusal injected in front
    sent: list[int] = []

    def refuse_second_creation(
        commands: Sequence[Mapping[str, object]], *, tolerate: Iterable[str] = ()
    ) -> list[Mapping[str, Any]]:
        if commands and commands[0]["command"] == "createRole":
            sent.append(len(commands))
            if len(sent) == 2:
                raise BrokerAdminError("the broker refused createRole: injected")
        return original_run(commands, tolerate=tolerate)

    with monkeypatch.context() as patch:
        patch.setattr(admin, "_run", refuse_second_creation)
        with pytest.raises(BrokerAdminError, match="injected"):
            admin.add_lamps(lamp_ids)
    assert len(sent) == 2
    assert admin.list_lamps() == []
    assert admin.add_lamps(lamp_ids[:2]).keys() == {"lamp-000", "lamp-001"}


def test_a_lamp_cannot_take_the_name_of_the_relay_or_admin(broker: BrokerFixture) -> None:
    for name in (broker.relay_username, broker.managed.credentials.admin_username):
        with pytest.raises(BrokerAdminError, match="already exists"):
            broker.add_lamp(name)


def test_an_invalid_lamp_id_is_refused_before_asking_the_broker(broker: BrokerFixture) -> None:
    with pytest.raises(ProtocolError, match="not a lamp id"):
        broker.add_lamp("Lamp A")


def test_removing_an_unknown_lamp_or_a_non_lamp_is_refused(broker: BrokerFixture) -> None:
    with pytest.raises(BrokerAdminError, match="no lamp 'ghost'"):
        broker.admin.remove_lamp("ghost")
    with pytest.raises(BrokerAdminError, match="not a lamp"):
        broker.admin.remove_lamp(broker.relay_username)
    broker.connect_relay()  # still there


def test_a_relay_login_is_bound_to_its_name_as_client_id(broker: BrokerFixture) -> None:
    password = broker.admin.add_relay("relay-3")
    for other in ("lamp-a", "relay-3-b"):
        elsewhere = broker.probe(username="relay-3", password=password, client_id=other)
        assert str(elsewhere.connect()) == "Not authorized", other
    broker.connect_relay("relay-3", password, client_id="relay-3")
    broker.admin.remove_relay("relay-3")
    assert broker.probe(username="relay-3", password=password).connect().is_failure
    with pytest.raises(BrokerAdminError, match="not a relay user"):
        broker.admin.remove_relay(broker.managed.credentials.admin_username)
    # A lamp or relay of that name would be bound to the installed relay's client id.
    for add in (broker.admin.add_lamp, broker.admin.add_relay):
        with pytest.raises(BrokerAdminError, match="the relay's client id"):
            add("touchlamp-relay")
    broker.connect_relay()  # the installed login, with its client id


def test_each_call_connects_by_itself_without_a_with_block(broker: BrokerFixture) -> None:
    admin = broker.managed.admin()
    password = admin.add_lamp("lamp-a")
    assert admin.list_lamps() == ["lamp-a"]
    broker.connect_lamp("lamp-a", password=password)


def test_a_wrong_admin_password_is_a_clear_error(broker: BrokerFixture) -> None:
    admin = BrokerAdmin(
        host=broker.host, port=broker.port, username="admin", password="wrong", timeout=5
    )
    with pytest.raises(BrokerAdminError, match="refused admin user 'admin'"):
        admin.connect()


def test_only_the_admin_may_send_commands(broker: BrokerFixture) -> None:
    relay = broker.connect_relay()
    lamp = broker.connect_lamp("lamp-a")
    command = json.dumps(
        {"commands": [{"command": "createClient", "username": "evil", "password": "x"}]}
    )
    for client in (relay, lamp):
        assert str(client.subscribe(RESPONSE_TOPIC)) == "Not authorized"
        assert str(client.publish(CONTROL_TOPIC, command)) == "Not authorized"
    assert broker.admin.list_lamps() == ["lamp-a"]
    assert broker.probe(username="evil", password="x", client_id="evil").connect().is_failure


def test_no_broker_is_a_clear_error() -> None:
    admin = BrokerAdmin(host="127.0.0.1", port=free_port(), username="a", password="b", timeout=2)
    with pytest.raises(BrokerAdminError, match="cannot reach the broker"):
        admin.connect()


def test_the_relay_settings_reach_the_broker_as_its_admin(broker: BrokerFixture) -> None:
    credentials = broker.managed.credentials
    settings = RelaySettings(
        mqtt={
            "host": broker.host,
            "port": broker.port,
            "username": credentials.relay_username,
            "password": credentials.relay_password,
            "topic_root": broker.topics.root,
        },
        admin={"username": credentials.admin_username, "password": credentials.admin_password},
    )

    password = BrokerAdmin.from_relay_settings(settings).add_lamp("lamp-a")

    broker.connect_lamp("lamp-a", password=password)


# -- many lamps at once: imported into a stopped broker -----------------------------------------


def test_lamps_imported_into_a_stopped_broker_are_as_bound_as_added_ones(
    broker: BrokerFixture,
) -> None:
    settings = broker.managed.settings
    broker.managed.stop()
    passwords = import_lamps(settings, ["lamp-b", "lamp-c"])
    broker.managed.start()
    lamp_a = broker.connect_lamp("lamp-a")  # added online, next to the imported ones
    lamp_b = broker.connect_lamp("lamp-b", password=passwords["lamp-b"])

    assert broker.admin.list_lamps() == ["lamp-a", "lamp-b", "lamp-c"]
    topics = broker.topics
    # The same role as an online add: its own topics only, refused at SUBSCRIBE and PUBLISH.
    assert str(lamp_b.publish(topics.touch("lamp-a"), b"forged")) == "Not authorized"
    assert str(lamp_b.subscribe("#")) == "Not authorized"
    assert not lamp_b.subscribe(topics.glow("lamp-b")).is_failure
    # Bound to its client id: lamp-c's login cannot take lamp-b's.
    takeover = broker.probe(username="lamp-c", password=passwords["lamp-c"], client_id="lamp-b")
    assert str(takeover.connect()) == "Not authorized"
    # Removed online like any lamp: its live connection is closed at once.
    broker.admin.remove_lamp("lamp-b")
    assert str(lamp_b.wait_disconnected()) == "Administrative action"
    assert not lamp_a.subscribe(topics.glow("lamp-a")).is_failure  # lamp-a stayed connected


def test_importing_into_a_running_broker_or_an_existing_lamp_is_refused(
    broker: BrokerFixture,
) -> None:
    settings = broker.managed.settings
    with pytest.raises(BrokerStateError, match="stop the broker"):
        import_lamps(settings, ["lamp-b"])
    broker.add_lamp("lamp-a")
    broker.close()
    before = broker.managed.layout.dynsec_file.read_bytes()
    with pytest.raises(BrokerStateError, match="lamp-a already exist"):
        import_lamps(settings, ["lamp-b", "lamp-a"])
    with pytest.raises(BrokerStateError, match="'touchlamp-relay' is the relay's client id"):
        import_lamps(settings, ["lamp-b", "touchlamp-relay"])
    assert broker.managed.layout.dynsec_file.read_bytes() == before  # all or none


def test_broker_lamp_import_prints_each_password_once_and_they_work(
    broker: BrokerFixture, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    where = ["--state-dir", str(broker.managed.layout.root), "--port", str(broker.port)]
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("lamp-y\n\nlamp-z\n", encoding="utf-8")
    command = ["broker", "lamp", "import", "lamp-x", "--ids-file", str(ids_file), *where]

    assert main(command) == 1  # the broker is running
    assert "stop the broker" in capsys.readouterr().err
    broker.managed.stop()
    assert main(command) == 0
    lines = capsys.readouterr().out.splitlines()
    passwords = dict(line.split("\t") for line in lines)
    assert list(passwords) == ["lamp-x", "lamp-y", "lamp-z"]
    broker.managed.start()
    for lamp_id, password in passwords.items():
        broker.connect_lamp(lamp_id, password=password)
