"""``touchlamp demo`` and ``touchlamp sim --lamps N``: lamps you can touch in a browser, with
a broker and a relay of their own.

The demo starts everything a household would run, on this machine and in one process tree:

1. Mosquitto (``ManagedBroker``: the project's rendered config, a free loopback port, its files
   in ``STATE/broker``) — the only child process;
2. the relay, in this process, on SQLite (``STATE/relay/relay.sqlite3``);
3. one lamp registration per simulated lamp, exactly as ``touchlamp relay lamp add`` does it
   (store record, broker login, enrollment token), and the token turned into the lamp's
   settings file as ``touchlamp device enroll`` does (``STATE/lamps/<id>.env``);
4. the simulated lamps (``Simulator``: the real agent on mock pins), paired through the relay's
   pairing service like two owners would (``pair new`` on the first, ``pair join`` on the rest);
5. the page (``WebServer``), whose address it prints, and ``STATE/demo.json`` for scripts::

       {"web": "http://127.0.0.1:8080/", "broker": {"host": "127.0.0.1", "port": 41234},
        "lamps": [{"id": "lamp-a", "username": "lamp-a", "password": "…"}, …]}

SIGINT (Ctrl-C), SIGTERM or SIGHUP (its terminal closed) stops it all in reverse order, including
Mosquitto; a signal during start-up unwinds what has started. Killed with SIGKILL, it leaves no
Mosquitto behind either (``ManagedBroker(stop_with_parent=True)``). Run it again on the same
state directory and it picks up the same lamps (their passwords, colours and pairing); the broker
gets a fresh port each time.

The page is simulate.py's (shared with ``device run --simulate`` and ``sim --env-file``, which
must not import this module: it pulls in the relay and the broker), the signal handling
``touchlamp.stopping``'s.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import threading
import time
import webbrowser
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from touchlamp.broker.errors import BrokerError
from touchlamp.broker.launcher import ManagedBroker
from touchlamp.config.broker import BrokerSettings, ListenerSettings
from touchlamp.config.common import SettingsError, load_settings
from touchlamp.config.device import DeviceSettings, HomeAssistantSettings, default_state_dir
from touchlamp.config.relay import RelaySettings
from touchlamp.device.enroll import write_enrollment
from touchlamp.device.homeassistant_settings import with_home_assistant
from touchlamp.device.link_api import LinkError
from touchlamp.device.sim import SimulatedLamp, Simulator
from touchlamp.device.simulate import serve_page
from touchlamp.errors import EXIT_OK, TouchlampError
from touchlamp.files import write_atomically
from touchlamp.protocol import (
    Enrollment,
    PairAction,
    PairRequest,
    PairResponse,
    decode_token,
    encode_token,
)
from touchlamp.server.relay import Relay
from touchlamp.server.store import LampExistsError, Store, StoreError, open_store
from touchlamp.stopping import StopSignals

__all__ = ["DEFAULT_STATE_DIR", "MAX_LAMPS", "DemoError", "run_demo"]

_log = logging.getLogger(__name__)

DEFAULT_STATE_DIR = default_state_dir() / "demo"
MAX_LAMPS = 26
_WAIT = 30.0
_PALETTE = (
    "#ff8c1a",  # amber
    "#3c78ff",  # blue
    "#35c46a",  # green
    "#d94cff",  # magenta
    "#22c7c7",  # teal
    "#ff4a4a",  # red
    "#ffd21a",  # yellow
    "#8a5cff",  # violet
)


class DemoError(TouchlampError, RuntimeError):
    """The demo could not start a part; the message says which and what to do."""


@dataclass(frozen=True, slots=True)
class _Login:
    lamp_id: str
    password: str


# -- entry points ----------------------------------------------------------------------------------
def run_demo(
    *,
    lamps: int,
    web_port: int,
    state_dir: Path,
    open_browser: bool,
    name: str = "demo",
    homeassistant: HomeAssistantSettings | None = None,
) -> int:
    """Broker, relay and ``lamps`` paired simulated lamps, until SIGTERM, SIGINT or SIGHUP;
    ``name`` is the command's, which its messages start with (``touchlamp sim: …``); with
    ``homeassistant``, each lamp also appears in the Home Assistant on that broker."""
    if not 1 <= lamps <= MAX_LAMPS:
        raise DemoError(f"the demo runs 1 to {MAX_LAMPS} lamps, not {lamps}")
    state_dir = state_dir.resolve()
    # A signal during start-up interrupts it, so what has started unwinds at once.
    with StopSignals(interrupt_until_ready=True) as stop:
        return _demo(
            lamps,
            web_port,
            state_dir,
            open_browser,
            stop,
            name=name,
            homeassistant=homeassistant,
        )


# -- the demo --------------------------------------------------------------------------------------
def _demo(
    lamps: int,
    web_port: int,
    state_dir: Path,
    open_browser: bool,
    stop: StopSignals,
    *,
    name: str,
    homeassistant: HomeAssistantSettings | None = None,
) -> int:
    state_dir.mkdir(parents=True, exist_ok=True)
    print(f"touchlamp {name}: starting in {state_dir}", flush=True)
    others = "the other" if lamps <= 2 else "the others"
    with _broker(state_dir) as broker:
        relay_settings = _relay_settings(state_dir, broker)
        logins = _register(state_dir, relay_settings, broker, lamps)
        settings = _enroll(state_dir, broker, logins)
        if homeassistant is not None:
            settings = [with_home_assistant(s, homeassistant, web_port) for s in settings]
        # Each lamp's page names its env file as a source of its settings.
        env_files = {lamp.lamp_id: _env_file(state_dir, lamp.lamp_id) for lamp in settings}
        with _relay(relay_settings), Simulator(lamps=settings, env_files=env_files) as simulator:
            _pair(simulator)

            def ready(url: str) -> None:
                _write_demo_json(state_dir / "demo.json", url, broker, logins)
                print(
                    f"touchlamp {name}: open {url}\n"
                    f"  tap a lamp to send a touch to {others}, hold it to choose its colour\n"
                    f"  broker {broker.host}:{broker.port}, logins in {state_dir / 'demo.json'}\n"
                    "  Ctrl-C stops everything",
                    flush=True,
                )
                if open_browser and _has_display():
                    webbrowser.open(url)

            serve_page(simulator, web_port, stop, ready)
    print(f"touchlamp {name}: stopped", flush=True)
    return EXIT_OK


@contextlib.contextmanager
def _broker(state_dir: Path) -> Iterator[ManagedBroker]:
    """Mosquitto from ``STATE/broker`` on a free loopback port, stopped on the way out."""
    settings = BrokerSettings(
        state_dir=state_dir / "broker",
        listeners=[ListenerSettings(address="127.0.0.1", port=_free_port())],
    )
    broker = ManagedBroker(settings, stop_with_parent=True)
    try:  # stop() even when start() is interrupted (a signal during start-up): it may be running
        try:
            broker.start()
        except BrokerError as error:
            raise DemoError(f"the broker did not start: {error}") from None
        yield broker
    finally:
        broker.stop()


def _free_port() -> int:
    # Mosquitto cannot be asked for port 0 and say which it took; the port is free when
    # probed, and taken again a moment later by Mosquitto.
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port: int = probe.getsockname()[1]
    return port


def _relay_settings(state_dir: Path, broker: ManagedBroker) -> RelaySettings:
    relay_dir = state_dir / "relay"
    relay_dir.mkdir(parents=True, exist_ok=True)
    credentials = broker.credentials
    return RelaySettings(
        state_dir=relay_dir,
        mqtt={
            "host": broker.host,
            "port": broker.port,
            "username": credentials.relay_username,
            "password": credentials.relay_password,
            "topic_root": broker.settings.topic_root,
        },
        admin={"username": credentials.admin_username, "password": credentials.admin_password},
        pairing={"max_group_size": max(8, MAX_LAMPS)},
    )


def _lamp_ids(count: int) -> list[str]:
    return [f"lamp-{chr(ord('a') + index)}" for index in range(count)]


def _register(
    state_dir: Path, settings: RelaySettings, broker: ManagedBroker, count: int
) -> list[_Login]:
    """Each lamp in the relay's store with a broker login, as ``relay lamp add`` does it.

    On a re-run the lamps are there already: each keeps the password its settings file holds
    (set again on the broker, so the two agree even if one of them was reset).
    """
    logins = []
    try:
        with _open_store(settings) as store, broker.admin() as admin:
            on_broker = set(admin.list_lamps())
            for index, lamp_id in enumerate(_lamp_ids(count)):
                with contextlib.suppress(LampExistsError):
                    store.add_lamp(
                        lamp_id, name=_name(lamp_id), color=_color(index), now_ms=_now_ms()
                    )
                if lamp_id in on_broker:
                    saved = _saved_password(state_dir, lamp_id)
                    password = admin.set_lamp_password(lamp_id, saved)
                else:
                    password = admin.add_lamp(lamp_id)
                logins.append(_Login(lamp_id=lamp_id, password=password))
    except BrokerError as error:
        raise DemoError(f"registering the demo lamps with the broker failed: {error}") from None
    return logins


def _name(lamp_id: str) -> str:
    return f"Lamp {lamp_id.removeprefix('lamp-').upper()}"


def _color(index: int) -> str:
    return _PALETTE[index % len(_PALETTE)]


def _now_ms() -> int:
    return int(time.time() * 1000)


def _env_file(state_dir: Path, lamp_id: str) -> Path:
    return state_dir / "lamps" / f"{lamp_id}.env"


def _saved_password(state_dir: Path, lamp_id: str) -> str | None:
    env_file = _env_file(state_dir, lamp_id)
    if not env_file.is_file():
        return None
    try:
        password = load_settings(DeviceSettings, env_file=env_file).mqtt.password
    except SettingsError:
        return None
    return None if password is None else password.get_secret_value()


def _enroll(state_dir: Path, broker: ManagedBroker, logins: list[_Login]) -> list[DeviceSettings]:
    """Each lamp's settings file from its enrollment token, as ``device enroll`` writes it."""
    settings = []
    for index, login in enumerate(logins):
        token = encode_token(
            Enrollment(
                lamp=login.lamp_id,
                password=login.password,
                host=broker.host,
                port=broker.port,
                root=broker.settings.topic_root,
            )
        )
        env_file = _env_file(state_dir, login.lamp_id)
        if not env_file.exists():
            # What an owner adds by hand: a name, a colour, where the lamp keeps its state.
            env_file.parent.mkdir(parents=True, exist_ok=True)
            env_file.write_text(
                f"TOUCHLAMP_DEVICE_NAME='{_name(login.lamp_id)}'\n"
                f"TOUCHLAMP_DEVICE_COLOR='{_color(index)}'\n"
                f"TOUCHLAMP_DEVICE_STATE_DIR='{env_file.with_suffix('')}'\n",
                encoding="utf-8",
            )
        write_enrollment(decode_token(token), env_file=env_file)
        settings.append(
            load_settings(
                DeviceSettings,
                env_file=env_file,
                # A demo lamp comes back quickly after the broker restarts.
                mqtt={"reconnect_min_seconds": 0.5, "reconnect_max_seconds": 5.0},
            )
        )
    return settings


def _open_store(settings: RelaySettings) -> Store:
    try:
        return open_store(settings.store_location)
    except (OSError, StoreError) as error:
        raise DemoError(
            f"cannot open the relay's store {settings.store_location}: {error}"
        ) from None


@contextlib.contextmanager
def _relay(settings: RelaySettings) -> Iterator[Relay]:
    with _open_store(settings) as store, Relay(settings=settings, store=store) as relay:
        if not relay.wait_connected(_WAIT):
            raise DemoError(f"the relay did not connect to the broker within {_WAIT:g} s")
        yield relay


def _pair(simulator: Simulator) -> None:
    """Pair every lamp with the first, through the relay's pairing service (skip if done)."""
    lamps = simulator.lamps
    if len(lamps) < 2:
        return
    first, others = lamps[0], lamps[1:]
    wanted = {lamp.lamp_id for lamp in lamps}
    status = _ask(first.link.request, PairRequest(action=PairAction.STATUS))
    if not (status.ok and set(status.members) >= wanted):  # else paired on an earlier run
        _join_all(first, others)
    # The relay answers a join before each lamp has its new group state: wait for that too,
    # or a touch made at once would be refused as "not paired".
    _wait_until(
        simulator,
        lambda: all(set(lamp.agent.partners) >= wanted - {lamp.lamp_id} for lamp in lamps),
        "every demo lamp to hear that it is paired",
    )


def _join_all(first: SimulatedLamp, others: list[SimulatedLamp]) -> None:
    for lamp in others:
        # A code is good for one join: one code per lamp joining.
        created = _ask(first.link.request, PairRequest(action=PairAction.CREATE))
        if not created.ok or created.code is None:
            raise DemoError(f"the relay would not make a pairing code: {created.reason}")
        joined = _ask(lamp.link.request, PairRequest(action=PairAction.JOIN, code=created.code))
        if not joined.ok and joined.error != "already-paired":
            raise DemoError(f"{lamp.lamp_id} could not join {first.lamp_id}: {joined.reason}")


def _has_display() -> bool:
    # Without a desktop, Python's webbrowser falls back to a text browser (lynx, w3m) that
    # would take over this terminal: then the printed address is the better way.
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _wait_until(simulator: Simulator, check: Callable[[], bool], what: str) -> None:
    """Wait (woken by the lamps' frames, which follow every event) until ``check()`` holds."""
    changed = threading.Event()
    unwatch = simulator.watch(changed.set)
    try:
        deadline = time.monotonic() + _WAIT
        while not check():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DemoError(f"gave up waiting for {what} after {_WAIT:g} s")
            changed.wait(remaining)
            changed.clear()
    finally:
        unwatch()


def _ask(request: Callable[..., PairResponse], message: PairRequest) -> PairResponse:
    try:
        return request(message, timeout=_WAIT)
    except LinkError as error:
        raise DemoError(f"pairing the demo lamps failed: {error}") from None


def _write_demo_json(path: Path, url: str, broker: ManagedBroker, logins: list[_Login]) -> None:
    document = {
        "web": url,
        "broker": {"host": broker.host, "port": broker.port},
        "lamps": [
            {"id": login.lamp_id, "username": login.lamp_id, "password": login.password}
            for login in logins
        ],
    }
    # It holds the lamps' passwords: readable by this user only, written whole or not at all.
    write_atomically(path, json.dumps(document, indent=2) + "\n", mode=0o600)
