"""Administering a running broker: lamps and relays, over Mosquitto's dynamic-security plugin.

``BrokerAdmin`` is a small synchronous client: each method publishes commands to
``$CONTROL/dynamic-security/v1`` as the admin user and waits for the plugin's answer. Used as a
context manager it keeps one connection for several calls; otherwise each call connects and
disconnects (``BrokerAdmin.from_relay_settings(settings).add_lamp(...)``). Changes take
effect at once, without a restart; removing a lamp (or changing its password) also disconnects
its live connection. This is what ``touchlamp broker lamp …`` and the relay's lamp commands call.

The commands themselves are built and their answers read in broker/dynsec_commands.py (pure);
this module sends them. The connection is a ``touchlamp.mqtt.session.Session``: paho's
callbacks only record what arrived, the calling thread waits for it. One command exchange runs
at a time (a lock), so the object may be shared.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

import paho.mqtt.client as mqtt

from touchlamp.broker import dynsec_commands as dynsec
from touchlamp.broker.acl import (
    CONTROL_TOPIC,
    INSTALLED_RELAY_CLIENT_ID,
    RESPONSE_TOPIC,
    lamp_role,
)
from touchlamp.broker.errors import BrokerAdminError
from touchlamp.broker.passwords import generate_password
from touchlamp.mqtt.client import new_client, tls_for_file
from touchlamp.mqtt.session import ConnectionLostError, NoAnswerError, Session
from touchlamp.protocol.topics import LAMP_ID_PATTERN, Topics, validate_lamp_id

if TYPE_CHECKING:
    from touchlamp.config.relay import RelaySettings

__all__ = ["BrokerAdmin"]

log = logging.getLogger(__name__)

_Result = TypeVar("_Result")


class BrokerAdmin:
    """Lamps and relays on a running Mosquitto, as its dynamic-security admin user.

    Use as a context manager (or call ``connect()`` and ``close()``) to keep one connection;
    without one, each method connects for its own duration. Every failure raises
    ``BrokerAdminError`` with the broker's own reason and what to do about it.
    """

    @classmethod
    def from_relay_settings(cls, settings: RelaySettings, *, timeout: float = 10.0) -> Self:
        """The admin of the broker a relay uses (``settings.mqtt`` address, ``settings.admin``)."""
        password = settings.admin.password
        if password is None:
            raise BrokerAdminError(
                "the broker's admin password is not set: set TOUCHLAMP_RELAY_ADMIN__PASSWORD_FILE "
                "to the broker's credentials/admin.password"
            )
        mqtt_settings = settings.mqtt
        return cls(
            host=mqtt_settings.host,
            port=mqtt_settings.effective_port,
            username=settings.admin.username,
            password=password.get_secret_value(),
            topics=Topics(mqtt_settings.topic_root),
            timeout=timeout,
            tls_cafile=str(mqtt_settings.ca_file) if mqtt_settings.ca_file else None,
            tls=mqtt_settings.tls,
        )

    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str,
        password: str,
        topics: Topics | None = None,
        timeout: float = 10.0,
        tls_cafile: str | None = None,
        tls: bool = False,
    ) -> None:
        self._host = host
        self._port = port
        self._username = username
        self._password = password
        self._topics = topics or Topics()
        self._timeout = timeout
        # Without a CA file: the system's trusted CAs.
        self._tls_context = tls_for_file(
            tls or tls_cafile is not None,
            Path(tls_cafile) if tls_cafile is not None else None,
            setting="TOUCHLAMP_RELAY_MQTT__CA_FILE",
            error=BrokerAdminError,
        )
        self._lock = threading.Lock()
        self._session: Session | None = None
        self._closing: contextlib.ExitStack | None = None

    def _new_client(self) -> mqtt.Client:
        # A fresh paho client per connection: paho's loop_start() makes a new socket pair each
        # time without closing the previous one, so reusing a client leaks sockets.
        return new_client(
            # Unique: an operator's CLI and the relay may administer at the same time.
            f"touchlamp-admin-{uuid.uuid4().hex[:12]}",
            username=self._username,
            password=self._password,
            tls=self._tls_context,
            log_as=f"{__name__}.paho",
        )

    # -- life cycle ----------------------------------------------------------------------------

    def connect(self) -> None:
        """Log in and subscribe to the plugin's responses; raise if the broker refuses."""
        self.close()  # an earlier connection's session
        where = f"{self._host}:{self._port}"
        closing = contextlib.ExitStack()
        session = closing.enter_context(
            Session.open(
                self._new_client(),
                host=self._host,
                port=self._port,
                timeout=self._timeout,
                keepalive=30,
            )
        )
        try:
            self._log_in(session, where)
        except BaseException:
            closing.close()
            raise
        self._session, self._closing = session, closing

    def _log_in(self, session: Session, where: str) -> None:
        if session.unreachable is not None:
            error = session.unreachable
            raise BrokerAdminError(
                f"cannot reach the broker at {where} ({error.strerror or error}): "
                "is it running (touchlamp broker run) and is the port right?"
            ) from error
        if session.refusal is not None:
            raise BrokerAdminError(
                f"the broker at {where} refused admin user {self._username!r}: "
                f"{session.refusal}; check the admin password file in the broker's state dir"
            )
        if session.refused is not None:
            raise self._no_answer("the broker's answer to the admin login")
        session.listen(RESPONSE_TOPIC)
        try:
            granted = session.subscribe(RESPONSE_TOPIC)
        except NoAnswerError:
            raise self._no_answer("the broker's answer to the admin subscription") from None
        if any(reason.is_failure for reason in granted):
            raise BrokerAdminError(
                f"user {self._username!r} may not read {RESPONSE_TOPIC} "
                f"({granted[0]}): is it the dynamic-security admin?"
            )

    def close(self) -> None:
        closing, self._closing, self._session = self._closing, None, None
        if closing is not None:
            closing.close()

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- lamps and relays ----------------------------------------------------------------------

    def add_lamp(self, lamp_id: str) -> str:
        """Create lamp ``lamp_id`` (username = client id = lamp id); return its new password."""
        return self.add_lamps([lamp_id])[lamp_id]

    def add_lamps(self, lamp_ids: Sequence[str]) -> dict[str, str]:
        """Create several lamps, all or none; return lamp id → new password.

        A few messages in all instead of three round trips per lamp. It saves round trips
        only: Mosquitto 2.0's plugin rewrites its whole JSON file after every command, so a lamp
        costs about the same either way and more the more lamps there are
        (`python -m bench.lamp_creation`, BENCHMARKS.md §3). Many lamps at once go faster into
        a stopped broker: ``touchlamp broker lamp import``.
        """
        for lamp_id in lamp_ids:
            validate_lamp_id(lamp_id)
            _refuse_the_relays_client_id(lamp_id, "a lamp id")
        repeated = sorted({lamp_id for lamp_id in lamp_ids if lamp_ids.count(lamp_id) > 1})
        if repeated:
            raise BrokerAdminError(f"lamp ids given more than once: {', '.join(repeated)}")
        return self._connected_for(lambda: self._add_lamps(list(lamp_ids)))

    def _add_lamps(self, lamp_ids: list[str]) -> dict[str, str]:
        taken = sorted(set(lamp_ids) & self._usernames())
        if taken:
            names = ", ".join(repr(name) for name in taken)
            verb, them = ("exists", "it") if len(taken) == 1 else ("exist", "them")
            raise BrokerAdminError(
                f"{names} already {verb} on the broker: remove {them} first "
                f"(touchlamp broker lamp remove {taken[0]}) or choose other ids"
            )
        roles = {lamp_id: lamp_role(self._topics, lamp_id) for lamp_id in lamp_ids}
        passwords = {lamp_id: generate_password() for lamp_id in lamp_ids}
        # A role left by an interrupted add may name another topic root: start afresh.
        for deletions in dynsec.batches([dynsec.delete_role(role.name) for role in roles.values()]):
            self._run(deletions, tolerate={dynsec.ROLE_NOT_FOUND})
        commands = {
            lamp_id: dynsec.create_lamp(lamp_id, passwords[lamp_id], roles[lamp_id])
            for lamp_id in lamp_ids
        }
        created: list[str] = []
        try:
            for lamps in dynsec.batches(
                lamp_ids,
                size=lambda lamp_id: len(json.dumps(commands[lamp_id])) + 2 * dynsec.TAG_BYTES,
            ):
                self._run([command for lamp_id in lamps for command in commands[lamp_id]])
                created += lamps
        except BrokerAdminError:
            self._undo_adds(created)
            raise
        for lamp_id in lamp_ids:
            log.info("lamp %s added to the broker", lamp_id)
        return passwords

    def _undo_adds(self, lamp_ids: list[str]) -> None:
        """All or none: remove the lamps of earlier batches (their passwords were never shown)."""
        commands = [command for lamp_id in lamp_ids for command in dynsec.delete_lamp(lamp_id)]
        for batch in dynsec.batches(commands):
            with contextlib.suppress(BrokerAdminError):
                self._run(batch, tolerate={dynsec.ROLE_NOT_FOUND, dynsec.CLIENT_NOT_FOUND})

    def _usernames(self) -> set[str]:
        (response,) = self._run([dynsec.list_clients()])
        return dynsec.client_names(response)

    def remove_lamp(self, lamp_id: str) -> None:
        """Delete lamp ``lamp_id``: it can no longer log in, and its live connection is closed."""
        validate_lamp_id(lamp_id)
        self._connected_for(lambda: self._remove_lamp(lamp_id))

    def _remove_lamp(self, lamp_id: str) -> None:
        self._require_lamp(lamp_id)
        self._run(dynsec.delete_lamp(lamp_id), tolerate={dynsec.ROLE_NOT_FOUND})
        log.info("lamp %s removed from the broker", lamp_id)

    def set_lamp_password(self, lamp_id: str, password: str | None = None) -> str:
        """Give lamp ``lamp_id`` a new password (random unless given); returns it.

        Its live connection is closed; it must log in again with the new password.
        """
        validate_lamp_id(lamp_id)
        new_password = password if password is not None else generate_password()
        if not new_password:
            raise BrokerAdminError("an empty password is not allowed: omit it to get a random one")
        return self._connected_for(lambda: self._set_lamp_password(lamp_id, new_password))

    def _set_lamp_password(self, lamp_id: str, new_password: str) -> str:
        self._require_lamp(lamp_id)
        self._run([dynsec.set_password(lamp_id, new_password)])
        log.info("lamp %s has a new password", lamp_id)
        return new_password

    def add_relay(self, username: str) -> str:
        """Create relay user ``username``, bound to client id ``username``; return its password.

        Each relay process has its own login, whose client id is its name, as a lamp's is: on
        Mosquitto 2.0.11 a login not bound to a client id may connect with *any*, a lamp's
        included, and so take over that lamp's session (SECURITY.md). Names are unique among
        lamps and relays alike, so no lamp can take a relay's client id either.
        """
        if not LAMP_ID_PATTERN.fullmatch(username):
            raise BrokerAdminError(
                f"{username!r} is not a usable relay name: "
                "use 3-32 characters from a-z, 0-9 and '-'"
            )
        _refuse_the_relays_client_id(username, "a relay name")
        return self._connected_for(lambda: self._add_relay(username))

    def _add_relay(self, username: str) -> str:
        if self._get_client(username) is not None:
            raise BrokerAdminError(
                f"{username!r} already exists on the broker: choose another name"
            )
        password = generate_password()
        self._run([dynsec.create_relay(username, password)])
        log.info("relay user %s added to the broker", username)
        return password

    def remove_relay(self, username: str) -> None:
        """Delete relay user ``username`` (made by ``add_relay``); its live connection closes."""
        self._connected_for(lambda: self._remove_relay(username))

    def _remove_relay(self, username: str) -> None:
        if not dynsec.is_relay(self._get_client(username)):
            raise BrokerAdminError(f"{username!r} is not a relay user on the broker")
        self._run([dynsec.delete_relay(username)])
        log.info("relay user %s removed from the broker", username)

    def list_lamps(self) -> list[str]:
        """The ids of all lamps on the broker, sorted."""
        return self._connected_for(self._list_lamps)

    def _list_lamps(self) -> list[str]:
        (response,) = self._run([dynsec.list_clients(verbose=True)])
        return dynsec.lamp_names(response)

    def run_commands(self, commands: Sequence[Mapping[str, object]]) -> list[Mapping[str, Any]]:
        """Send raw dynamic-security ``commands`` in one message; their responses, in order.

        For measuring the plugin (bench/dynsec_growth.py); an ``error`` raises.
        """
        return self._connected_for(lambda: self._run(commands))

    # -- plumbing ------------------------------------------------------------------------------

    def _connected_for(self, action: Callable[[], _Result]) -> _Result:
        """Run ``action`` on the open connection, or on one opened just for it."""
        if self._session is not None:
            return action()
        with self:
            return action()

    def _require_lamp(self, lamp_id: str) -> None:
        validate_lamp_id(lamp_id)
        client = self._get_client(lamp_id)
        if client is None:
            raise BrokerAdminError(
                f"there is no lamp {lamp_id!r} on the broker "
                "(touchlamp broker lamp list shows them)"
            )
        if not dynsec.is_lamp(lamp_id, client):
            raise BrokerAdminError(f"{lamp_id!r} is a broker user but not a lamp: left unchanged")

    def _get_client(self, username: str) -> Mapping[str, Any] | None:
        (response,) = self._run([dynsec.get_client(username)], tolerate={dynsec.CLIENT_NOT_FOUND})
        return dynsec.client_of(response)

    def _run(
        self, commands: Sequence[Mapping[str, object]], *, tolerate: Iterable[str] = ()
    ) -> list[Mapping[str, Any]]:
        """Send ``commands`` in one message; return their responses in order.

        A response with an ``error`` raises ``BrokerAdminError`` unless the error is in
        ``tolerate`` (then the response is returned as it is).
        """
        session = self._session
        if session is None:
            raise BrokerAdminError("the admin client is not connected: call connect() first")
        tolerated = set(tolerate)
        with self._lock:
            tagged = dynsec.tagged(commands)
            session.client.publish(CONTROL_TOPIC, dynsec.control_message(tagged), qos=1)
            by_tag = self._collect(session, {str(command["correlationData"]) for command in tagged})
        responses = [by_tag[str(command["correlationData"])] for command in tagged]
        for command, response in zip(commands, responses, strict=True):
            error = response.get("error")
            if error is not None and error not in tolerated:
                raise BrokerAdminError(
                    f"the broker refused {command['command']}{dynsec.subject(command)}: {error}"
                )
        return responses

    def _collect(self, session: Session, tags: set[str]) -> dict[str, Mapping[str, Any]]:
        found: dict[str, Mapping[str, Any]] = {}
        deadline = time.monotonic() + self._timeout
        while len(found) < len(tags):
            try:
                payload = session.next_message(deadline)
            except ConnectionLostError as lost:
                raise BrokerAdminError(
                    f"the broker closed the admin connection ({lost.reason})"
                ) from None
            if payload is None:
                raise self._no_answer("the dynamic-security plugin's answer")
            try:
                document = json.loads(payload)
            except ValueError:
                continue  # not an answer to us; the plugin only sends JSON
            for response in document.get("responses", []) if isinstance(document, dict) else []:
                tag = response.get("correlationData") if isinstance(response, dict) else None
                if tag in tags:
                    found[tag] = response
        return found

    def _no_answer(self, what: str) -> BrokerAdminError:
        return BrokerAdminError(
            f"no answer from the broker at {self._host}:{self._port} within "
            f"{self._timeout:g} s while waiting for {what}: is the dynamic-security plugin "
            "loaded (see the broker's log)?"
        )


def _refuse_the_relays_client_id(name: str, what: str) -> None:
    # Its login would be bound to the installed relay's client id, and could push it off.
    if name == INSTALLED_RELAY_CLIENT_ID:
        raise BrokerAdminError(
            f"{name!r} is the relay's client id, not usable as {what}: choose another name"
        )
