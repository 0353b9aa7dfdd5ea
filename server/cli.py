"""``touchlamp relay …``: run the relay and manage lamps and groups.

::

    touchlamp relay run [--env-file F]                 serve until SIGTERM
    touchlamp relay lamp add ID [--name N] [--color C] [--json]
    touchlamp relay lamp list [--json]
    touchlamp relay lamp remove ID
    touchlamp relay pair ID ID [ID …] [--name N]
    touchlamp relay group list [--json]
    touchlamp relay group show ID                      a group id, or a lamp id

Every command reads ``RelaySettings`` (``--env-file`` and ``TOUCHLAMP_RELAY_*``). Exit codes: 0
done, 1 refused or failed (the message says why and what to do), 2 bad settings or usage.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import sys
from functools import partial
from pathlib import Path
from typing import Any

from touchlamp import sdnotify
from touchlamp.broker.admin import BrokerAdmin
from touchlamp.config.common import load_settings
from touchlamp.config.relay import RelaySettings
from touchlamp.errors import EXIT_OK, EXIT_USAGE, RefusedError
from touchlamp.install_commands import register_install
from touchlamp.protocol import (
    Enrollment,
    GroupState,
    ProtocolError,
    encode_token,
    validate_lamp_id,
)
from touchlamp.protocol.messages import Color
from touchlamp.server.announce import AnnounceError, announce_states
from touchlamp.server.groupstate import NOT_PAIRED, states_for
from touchlamp.server.metrics import MetricsServer, RelayMetrics
from touchlamp.server.pairing import new_group_id
from touchlamp.server.relay import Relay
from touchlamp.server.store import (
    Group,
    GroupExistsError,
    Lamp,
    LampExistsError,
    Store,
    StoreError,
    UnknownLampError,
    open_store,
)
from touchlamp.stopping import StopSignals

__all__ = ["register"]

_log = logging.getLogger(__name__)
DEFAULT_COLOR = "#ff8c1a"
_WATCHDOG_FALLBACK_SECONDS = 5.0


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--env-file", type=Path, help="read TOUCHLAMP_RELAY_* settings from this file"
    )
    relay = subparsers.add_parser("relay", help="run the relay; manage lamps and groups")
    commands = relay.add_subparsers(title="relay commands", metavar="COMMAND", required=True)
    register_install(commands, role="relay")

    run = commands.add_parser(
        "run", parents=[common], help="forward touches until SIGTERM (the service's command)"
    )
    run.set_defaults(func=_run)

    lamp = commands.add_parser("lamp", help="register, list and remove lamps")
    lamps = lamp.add_subparsers(title="lamp commands", metavar="COMMAND", required=True)
    add = lamps.add_parser(
        "add",
        parents=[common],
        help="register a lamp, create its broker login, print its enrollment token",
    )
    add.add_argument("lamp_id", metavar="ID", help="3-32 characters: a-z, 0-9 and '-'")
    add.add_argument("--name", help="shown to the other lamps of its group (default: the id)")
    add.add_argument("--color", help=f"its colour, #rrggbb (default {DEFAULT_COLOR})")
    add.add_argument(
        "--json",
        action="store_true",
        help='print {"lamp", "username", "password", "host", "port", "token"} instead',
    )
    add.set_defaults(func=_lamp_add)
    listing = lamps.add_parser("list", parents=[common], help="every lamp, its group and presence")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(func=_lamp_list)
    remove = lamps.add_parser(
        "remove", parents=[common], help="forget a lamp and revoke its broker login at once"
    )
    remove.add_argument("lamp_id", metavar="ID")
    remove.set_defaults(func=_lamp_remove)

    pair = commands.add_parser(
        "pair", parents=[common], help="put lamps into one group (each leaves its old group)"
    )
    pair.add_argument("lamp_ids", metavar="ID", nargs="+", help="two or more lamp ids")
    pair.add_argument("--name", help="the group's name (default: the lamps' names)")
    pair.set_defaults(func=_pair)

    group = commands.add_parser("group", help="list groups or show one")
    groups = group.add_subparsers(title="group commands", metavar="COMMAND", required=True)
    group_list = groups.add_parser("list", parents=[common], help="every group and its members")
    group_list.add_argument("--json", action="store_true", help="print JSON instead of a table")
    group_list.set_defaults(func=_group_list)
    show = groups.add_parser("show", parents=[common], help="one group, by group id or lamp id")
    show.add_argument("id", metavar="ID")
    show.set_defaults(func=_group_show)


# -- run -----------------------------------------------------------------------------------------
def _run(args: argparse.Namespace) -> int:
    settings = load_settings(RelaySettings, env_file=args.env_file)
    with StopSignals() as stop:  # SIGTERM (systemd), SIGINT (Ctrl-C), SIGHUP (a closed terminal)
        return _run_until(stop, settings)


def _run_until(stop: StopSignals, settings: RelaySettings) -> int:
    with _store(settings) as store, contextlib.ExitStack() as metrics_server:
        metrics = RelayMetrics()
        relay = Relay(settings=settings, store=store, metrics=metrics)
        if settings.metrics_port:
            metrics_server.enter_context(
                MetricsServer(
                    host=settings.metrics_host,
                    port=settings.metrics_port,
                    registry=metrics.registry,
                    healthy=lambda: relay.connected,
                )
            )
        with relay:
            try:
                return _serve(relay, settings, stop)
            finally:
                sdnotify.stopping("finishing in-flight touches")


def _serve(relay: Relay, settings: RelaySettings, stop: StopSignals) -> int:
    """The main loop: tell systemd we are ready once connected, ping its watchdog while the
    worker is alive, and return when asked to stop (or the broker refuses our login)."""
    every = sdnotify.watchdog_due_every() or _WATCHDOG_FALLBACK_SECONDS
    where = f"{settings.mqtt.host}:{settings.mqtt.effective_port}"
    ready = False
    while not stop.wait(timeout=min(every, 1.0)):
        if relay.auth_error is not None:
            return EXIT_USAGE  # the relay has logged why; restarting cannot fix it
        if relay.connected and not ready:
            ready = True
            sdnotify.ready(f"connected to {where}")
            print(f"touchlamp relay: connected to {where}, forwarding", file=sys.stderr)
        if relay.healthy_worker(within=max(every * 2, 5.0)):
            sdnotify.watchdog()
    return EXIT_OK


# -- lamps ---------------------------------------------------------------------------------------
def _lamp_add(args: argparse.Namespace) -> int:
    settings = load_settings(RelaySettings, env_file=args.env_file)
    lamp_id = _lamp_id(args.lamp_id)
    color = _color(args.color or DEFAULT_COLOR)
    name = (args.name or lamp_id).strip()[:40] or lamp_id
    ca = _read_ca(settings)
    with _store(settings) as store:
        try:
            store.add_lamp(lamp_id, name=name, color=color, now_ms=_now_ms())
        except LampExistsError:
            raise RefusedError(
                f"lamp {lamp_id} is already registered; remove it first "
                f"(`touchlamp relay lamp remove {lamp_id}`) or choose another id"
            ) from None
        try:
            password = _admin(settings).add_lamp(lamp_id)
        except BaseException:
            store.remove_lamp(lamp_id)  # no half-registered lamp without a broker login
            raise
    enrollment = Enrollment(
        lamp=lamp_id,
        password=password,
        host=settings.public_host,
        port=settings.public_port,
        root=settings.mqtt.topic_root,
        tls=settings.public_tls,
        ca=ca,
    )
    token = encode_token(enrollment)
    if args.json:
        print(
            json.dumps(
                {
                    "lamp": lamp_id,
                    "username": lamp_id,
                    "password": password,
                    "host": enrollment.host,
                    "port": enrollment.port,
                    "token": token,
                }
            )
        )
    else:
        print(
            f"Registered lamp {lamp_id}. On the lamp, run:\n\n"
            f"  touchlamp device enroll {token}\n\n"
            "The token holds the lamp's password: hand it over privately; it is not shown again.",
            file=sys.stderr,
        )
        print(token)
    return EXIT_OK


def _lamp_list(args: argparse.Namespace) -> int:
    settings = load_settings(RelaySettings, env_file=args.env_file)
    with _store(settings) as store:
        lamps = store.list_lamps()
        group_names = {group.id: group.name for group in store.list_groups()}
    if args.json:
        print(json.dumps([_lamp_json(lamp, group_names) for lamp in lamps]))
        return EXIT_OK
    if not lamps:
        print("No lamps yet: add one with `touchlamp relay lamp add ID`.", file=sys.stderr)
        return EXIT_OK
    rows = [
        [
            lamp.id,
            lamp.name,
            _group_label(lamp.group_id, group_names),
            "online" if lamp.online else "offline",
            _when(lamp.last_touch_ms),
        ]
        for lamp in lamps
    ]
    _table(["ID", "NAME", "GROUP", "ONLINE", "LAST TOUCH"], rows)
    return EXIT_OK


def _lamp_remove(args: argparse.Namespace) -> int:
    settings = load_settings(RelaySettings, env_file=args.env_file)
    lamp_id = _lamp_id(args.lamp_id)
    with _store(settings) as store:
        if store.get_lamp(lamp_id) is None:
            raise RefusedError(f"no lamp {lamp_id} is registered (see `touchlamp relay lamp list`)")
        # Revoke first: a lamp that must go should lose its login even if the rest fails.
        with _admin(settings) as admin:
            if lamp_id in admin.list_lamps():
                admin.remove_lamp(lamp_id)
            else:
                print(
                    f"touchlamp: note: the broker had no login for {lamp_id}; "
                    "removing it from the relay's store",
                    file=sys.stderr,
                )
        try:
            left = store.remove_lamp(lamp_id)
        except UnknownLampError:
            left = None  # removed concurrently; the login is revoked either way
        states: dict[str, GroupState] = {lamp_id: NOT_PAIRED}
        if left is not None:
            states.update(states_for(store, [member.id for member in left.members]))
    print(f"Removed lamp {lamp_id}; its broker login is revoked.", file=sys.stderr)
    _announce(settings, states)
    return EXIT_OK


# -- groups --------------------------------------------------------------------------------------
def _pair(args: argparse.Namespace) -> int:
    settings = load_settings(RelaySettings, env_file=args.env_file)
    lamp_ids = [_lamp_id(lamp_id) for lamp_id in args.lamp_ids]
    if len(set(lamp_ids)) < 2:
        print("touchlamp: pair needs at least two different lamp ids", file=sys.stderr)
        return EXIT_USAGE
    if len(set(lamp_ids)) != len(lamp_ids):
        raise RefusedError("each lamp may appear only once")
    limit = settings.pairing.max_group_size
    if len(lamp_ids) > limit:
        raise RefusedError(
            f"a group holds at most {limit} lamps (TOUCHLAMP_RELAY_PAIRING__MAX_GROUP_SIZE)"
        )
    with _store(settings) as store:
        lamps = [store.get_lamp(lamp_id) for lamp_id in lamp_ids]
        missing = [lamp_id for lamp_id, lamp in zip(lamp_ids, lamps, strict=True) if lamp is None]
        if missing:
            raise RefusedError(
                f"not registered: {', '.join(missing)}; add with `touchlamp relay lamp add`"
            )
        # Lamps left behind in their old groups see a change too.
        affected = set(lamp_ids)
        for lamp_id in lamp_ids:
            old = store.group_of(lamp_id)
            if old is not None:
                affected.update(member.id for member in old.members)
        name = args.name or " & ".join(lamp.name for lamp in lamps if lamp is not None)
        group = _create_group(store, lamp_ids, name=name.strip()[:40] or "lamps")
        states = states_for(store, sorted(affected))
    print(f"Paired {', '.join(lamp_ids)} as group {group.id} ({group.name}).", file=sys.stderr)
    _announce(settings, states)
    return EXIT_OK


def _create_group(store: Store, lamp_ids: list[str], *, name: str) -> Group:
    for attempt in range(5):
        try:
            return store.create_group(lamp_ids, name=name, group_id=new_group_id())
        except GroupExistsError:
            if attempt == 4:
                raise
    raise AssertionError("unreachable: the loop returns or raises")


def _group_list(args: argparse.Namespace) -> int:
    settings = load_settings(RelaySettings, env_file=args.env_file)
    with _store(settings) as store:
        groups = store.list_groups()
    if args.json:
        print(json.dumps([_group_json(group) for group in groups]))
        return EXIT_OK
    if not groups:
        print(
            "No groups yet: pair lamps with `touchlamp relay pair ID ID`, or by code.",
            file=sys.stderr,
        )
        return EXIT_OK
    rows = [
        [group.id, group.name, ", ".join(member.id for member in group.members)] for group in groups
    ]
    _table(["ID", "NAME", "MEMBERS"], rows)
    return EXIT_OK


def _group_show(args: argparse.Namespace) -> int:
    settings = load_settings(RelaySettings, env_file=args.env_file)
    with _store(settings) as store:
        group = store.get_group(args.id) or store.group_of(args.id)
        if group is None:
            what = "lamp" if store.get_lamp(args.id) is not None else "group or lamp"
            detail = " is in no group" if what == "lamp" else " exists"
            raise RefusedError(f"no {what} {args.id!r}{detail} (see `touchlamp relay group list`)")
    print(f"{group.id}  {group.name}  ({len(group.members)} lamps)")
    rows = [
        [
            member.id,
            member.name,
            member.color,
            "online" if member.online else "offline",
            _when(member.last_touch_ms),
        ]
        for member in group.members
    ]
    _table(["ID", "NAME", "COLOUR", "ONLINE", "LAST TOUCH"], rows)
    return EXIT_OK


# -- helpers -------------------------------------------------------------------------------------
def _store(settings: RelaySettings) -> Store:
    """The relay's store, to use in a ``with`` block (it closes it)."""
    try:
        return open_store(settings.store_location)
    except StoreError as error:
        raise RefusedError(f"cannot open the relay's store: {error}") from None


def _admin(settings: RelaySettings) -> BrokerAdmin:
    return BrokerAdmin.from_relay_settings(settings)


def _announce(settings: RelaySettings, states: dict[str, GroupState]) -> None:
    try:
        # The broker's admin makes the command's relay login (the relay's layer does not
        # import the broker's, ARCHITECTURE.md).
        announce_states(settings, states, logins=partial(BrokerAdmin.from_relay_settings, settings))
    except AnnounceError as error:
        print(
            f"touchlamp: warning: {error}; the lamps see the change when the relay next starts",
            file=sys.stderr,
        )


def _lamp_id(text: str) -> str:
    try:
        return validate_lamp_id(text)
    except ProtocolError as error:
        raise RefusedError(f"{text!r} is {error.reason}") from None


def _color(text: str) -> str:
    from pydantic import TypeAdapter, ValidationError  # noqa: PLC0415  only two commands use it

    try:
        return str(TypeAdapter(Color).validate_python(text))
    except ValidationError:
        raise RefusedError(f"{text!r} is not a colour: use #rrggbb, e.g. #ff8c1a") from None


def _read_ca(settings: RelaySettings) -> str | None:
    path = settings.public.ca_file or (settings.mqtt.ca_file if settings.public_tls else None)
    if path is None:
        return None
    try:
        return path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as error:
        raise RefusedError(f"cannot read the CA certificate {path}: {error}") from None


def _now_ms() -> int:
    return int(dt.datetime.now(dt.UTC).timestamp() * 1000)


def _when(epoch_ms: int | None) -> str:
    if epoch_ms is None:
        return "never"
    moment = dt.datetime.fromtimestamp(epoch_ms / 1000, dt.UTC).astimezone()
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _group_label(group_id: str | None, names: dict[str, str]) -> str:
    if group_id is None:
        return "-"
    return f"{names.get(group_id, '?')} ({group_id})"


def _lamp_json(lamp: Lamp, names: dict[str, str]) -> dict[str, object]:
    return {
        "id": lamp.id,
        "name": lamp.name,
        "color": lamp.color,
        "group": lamp.group_id,
        "group_name": names.get(lamp.group_id) if lamp.group_id else None,
        "online": lamp.online,
        "last_touch_ms": lamp.last_touch_ms,
    }


def _group_json(group: Group) -> dict[str, object]:
    return {
        "id": group.id,
        "name": group.name,
        "members": [member.id for member in group.members],
    }


def _table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    for row in [headers, *rows]:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
