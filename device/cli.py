"""The lamp's own commands: ``device`` and ``pair`` (``demo``, ``sim``: cli/demo_commands.py).

::

    touchlamp device run [--env-file F] [--simulate] [--web-port P] [--web-host H]
    touchlamp device enroll TOKEN [--env-file F]
    touchlamp device selftest [--env-file F] [--touch-timeout S]
    touchlamp device show [--env-file F]                  the lamp, its group, the owner's settings
    touchlamp device set KEY VALUE [KEY VALUE …] [--env-file F]   change them (at once, kept)
    touchlamp pair new | join CODE | leave | status [--env-file F]

Exit codes: 0 done, 1 refused or failed (the message says why and what to do), 2 bad settings
or hardware that cannot work as set up (restarting will not help: systemd's unit does not).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path
from typing import Any

from touchlamp.arguments import port_number
from touchlamp.config.common import SettingsError, load_settings
from touchlamp.config.device import DeviceSettings, default_state_dir
from touchlamp.config.enrolment_file import ENROLMENT_FILE
from touchlamp.config.lamp_file import state_owned_like_its_directory
from touchlamp.device import owner_settings
from touchlamp.device.clock import SystemClock
from touchlamp.device.control import (
    NoLampRunningError,
    ask_owner,
    ask_running_lamp,
)
from touchlamp.device.enroll import (
    SERVICE_STATE_DIR,
    default_env_file,
    write_enrollment,
)
from touchlamp.device.gpio import GpioUnavailableError, open_pin_factory
from touchlamp.device.lamp_process import run_on_pins
from touchlamp.device.link import LampLink
from touchlamp.device.owner_auth import OwnerAuth
from touchlamp.device.selftest import run_selftest
from touchlamp.device.unenrolled import (
    UNENROLLED_ID,
    Enroller,
    load_or_unenrolled,
)
from touchlamp.errors import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, RefusedError
from touchlamp.install_commands import register_install
from touchlamp.protocol import PairAction, PairRequest, PairResponse, ProtocolError, decode_token

__all__ = ["LAMP_WEB_PORT", "register"]

LAMP_WEB_PORT = 8080
"""A real lamp's page: not 80, which would need a capability the service does not have."""


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    env_file = argparse.ArgumentParser(add_help=False)
    env_file.add_argument(
        "--env-file", type=Path, help="read TOUCHLAMP_DEVICE_* settings from this file"
    )

    device = subparsers.add_parser("device", help="run, enroll or self-test a lamp")
    commands = device.add_subparsers(title="device commands", metavar="COMMAND", required=True)
    register_install(commands, role="device")
    run = commands.add_parser(
        "run", parents=[env_file], help="run the lamp until SIGTERM (the service's command)"
    )
    run.add_argument(
        "--simulate",
        action="store_true",
        help="use simulated pins instead of the Raspberry Pi's, and serve a page to touch it",
    )
    run.add_argument(
        "--web-port",
        type=port_number,
        default=None,
        help=f"the lamp's page's port (default {LAMP_WEB_PORT} on every address; with "
        "--simulate a free one on 127.0.0.1; 0 picks a free one)",
    )
    run.add_argument(
        "--web-host",
        default=None,
        help="the address the lamp's page listens on (default 0.0.0.0: the home network; "
        "with --simulate 127.0.0.1); 'off' serves no page",
    )
    run.set_defaults(func=_device_run)

    enroll = commands.add_parser(
        "enroll",
        help="write this lamp's settings from the token `touchlamp relay lamp add` printed",
    )
    enroll.add_argument("token", metavar="TOKEN")
    enroll.add_argument(
        "--env-file",
        type=Path,
        help=f"the settings file to write (default {default_env_file()})",
    )
    enroll.set_defaults(func=_device_enroll)

    selftest = commands.add_parser(
        "selftest",
        parents=[env_file],
        help="cycle the LED through colours and wait for a touch (no network needed)",
    )
    selftest.add_argument(
        "--touch-timeout", type=float, default=30.0, help="seconds to wait for a touch"
    )
    selftest.set_defaults(func=_device_selftest)
    _register_owner(commands, env_file)

    pair = subparsers.add_parser("pair", help="pair this lamp with others by code")
    actions = pair.add_subparsers(title="pair commands", metavar="COMMAND", required=True)
    asking = argparse.ArgumentParser(add_help=False, parents=[env_file])
    asking.add_argument(
        "--timeout", type=float, default=15.0, help="seconds to wait for the relay's answer"
    )
    new = actions.add_parser("new", parents=[asking], help="make a code another lamp can join with")
    new.set_defaults(func=_pair, action=PairAction.CREATE)
    join = actions.add_parser("join", parents=[asking], help="join the group of a code")
    join.add_argument("code", metavar="CODE")
    join.set_defaults(func=_pair, action=PairAction.JOIN)
    leave = actions.add_parser("leave", parents=[asking], help="leave this lamp's group")
    leave.set_defaults(func=_pair, action=PairAction.LEAVE)
    status = actions.add_parser("status", parents=[asking], help="show this lamp's group")
    status.set_defaults(func=_pair, action=PairAction.STATUS)


def _register_owner(
    commands: argparse._SubParsersAction[Any], env_file: argparse.ArgumentParser
) -> None:
    show = commands.add_parser(
        "show",
        parents=[env_file],
        help="the lamp's name and colour, its group and who is online, and the owner's settings",
    )
    show.set_defaults(func=_device_show)
    keys = ", ".join(owner_settings.KEYS)
    change = commands.add_parser(
        "set",
        parents=[env_file],
        help="change the owner's settings (applied at once by a running lamp, and kept)",
        description=f"KEY is one of: {keys}. Several KEY VALUE pairs are applied together.",
    )
    change.add_argument("pairs", nargs="+", metavar="KEY VALUE")
    change.set_defaults(func=_device_set)


# -- device run ------------------------------------------------------------------------------------
def _device_run(args: argparse.Namespace) -> int:
    if args.simulate:
        settings = load_settings(DeviceSettings, env_file=args.env_file)
        # Not touchlamp.demo, which would bring the relay and the broker launcher into a lamp.
        from touchlamp.device import simulate  # noqa: PLC0415  the page, only with --simulate

        return simulate.run_simulator(
            lamps=[settings],
            web_port=args.web_port or 0,
            web_host=args.web_host or "127.0.0.1",
            env_files={settings.lamp_id: args.env_file} if args.env_file else None,
        )
    # A lamp without a token yet runs too, and its page offers to paste one (device/unenrolled.py).
    settings = load_or_unenrolled(args.env_file)
    try:
        pins = open_pin_factory(settings.hardware)
    except GpioUnavailableError as error:
        if not error.off_a_pi:
            raise
        raise GpioUnavailableError(
            f"{error}; to try the lamp without one: touchlamp device run --simulate"
        ) from error
    web = None
    if args.web_host != "off":
        # Every address by default: the page is for the home network (DEPLOY.md, SECURITY.md).
        host = args.web_host or "0.0.0.0"  # noqa: S104
        web = (host, LAMP_WEB_PORT if args.web_port is None else args.web_port)
    # One owner across the restart below: the claim and the sessions stay.
    auth = OwnerAuth(state_dir=settings.state_dir, now=SystemClock().monotonic)
    while True:
        enroller = None
        if settings.lamp_id == UNENROLLED_ID:
            enroller = Enroller(state_dir=settings.state_dir, env_file=args.env_file)
        code, web = run_on_pins(
            settings, pins, env_file=args.env_file, web=web, auth=auth, enroller=enroller
        )
        if enroller is None or not enroller.enrolled.is_set():
            return code
        # Enrolled on the page: run again as the enrolled lamp (why not a link swapped into
        # the running lamp: device/unenrolled.py).
        settings = load_settings(DeviceSettings, env_file=args.env_file)
        print(f"touchlamp: enrolled as lamp {settings.lamp_id}; starting it", file=sys.stderr)


# -- device enroll ---------------------------------------------------------------------------------
def _device_enroll(args: argparse.Namespace) -> int:
    try:
        enrollment = decode_token(args.token)
    except ProtocolError as error:
        print(f"touchlamp: the {error}", file=sys.stderr)
        return EXIT_USAGE
    env_file: Path = args.env_file or default_env_file()
    # The service's file (root's default) names the unit's state directory, where `pair` run
    # by root then finds the running service. A new file of a lamp run by hand gets a state
    # directory of its own, so two lamps on one machine keep their outboxes and control sockets
    # apart; an existing file without one keeps the directory its lamp has used so far.
    service = os.geteuid() == 0 and env_file == default_env_file()
    state_dir: Path | None = None
    if service:
        state_dir = SERVICE_STATE_DIR
    elif not env_file.exists():
        state_dir = default_state_dir() / enrollment.lamp
    enrolled = write_enrollment(enrollment, env_file=env_file, state_dir=state_dir)
    try:
        # A token pasted on the page earlier would win over this one (it is layered above
        # the env file): this newer enrolment replaces it.
        pasted = load_or_unenrolled(env_file).state_dir / ENROLMENT_FILE
        if pasted.exists():
            pasted.unlink()
            print(f"Removed {pasted}: the token pasted on the lamp's page, replaced by this one.")
        load_settings(DeviceSettings, env_file=env_file)
    except SettingsError as error:
        raise RefusedError(
            f"wrote {env_file}, but its other settings are wrong: {error}; fix the file"
        ) from None
    verb = "Updated" if enrolled.replaced else "Wrote"
    where = f"{enrollment.host}:{enrollment.port}" + (" with TLS" if enrollment.tls else "")
    print(f"Enrolled lamp {enrollment.lamp} with the broker at {where}.")
    print(f"{verb} {env_file} (mode 0600: it holds the lamp's password).")
    if enrolled.ca_file is not None:
        print(f"The broker's CA certificate is in {enrolled.ca_file}.")
    if state_dir is not None and not service:
        print(f"The lamp keeps its state (queued touches, colour) in {state_dir}.")
    if service:
        print(
            "Start the lamp: sudo systemctl restart touchlamp-device\n"
            f"then pair it: sudo touchlamp pair new --env-file {env_file}"
        )
    else:
        print(
            f"Start the lamp: touchlamp device run --env-file {env_file}\n"
            f"then pair it: touchlamp pair new --env-file {env_file}"
        )
    return EXIT_OK


# -- device selftest -------------------------------------------------------------------------------
def _device_selftest(args: argparse.Namespace) -> int:
    # A lamp being assembled may not be enrolled yet: only its pins and looks matter here.
    settings = load_settings(DeviceSettings, env_file=args.env_file, lamp_id="selftest")
    works = run_selftest(
        hardware=settings.hardware,
        looks=settings.looks,
        out=sys.stdout,
        touch_timeout=args.touch_timeout,
        pin_factory=open_pin_factory(settings.hardware),
    )
    return EXIT_OK if works else EXIT_FAILURE


# -- device show / set -----------------------------------------------------------------------------
def _device_show(args: argparse.Namespace) -> int:
    answer = _ask_owner(args.env_file, {"owner": "show"})
    print(owner_settings.describe_answer(answer))
    return EXIT_OK


def _device_set(args: argparse.Namespace) -> int:
    pairs: list[str] = args.pairs
    if len(pairs) % 2:
        print(
            f"touchlamp: {pairs[-1]!r} has no value: give KEY VALUE pairs "
            f"(KEY is one of {', '.join(owner_settings.KEYS)})",
            file=sys.stderr,
        )
        return EXIT_USAGE
    changes = dict(zip(pairs[::2], pairs[1::2], strict=True))
    answer = _ask_owner(args.env_file, {"owner": "set", "changes": changes})
    print(owner_settings.describe_answer(answer, only=set(changes)))
    return EXIT_OK


def _ask_owner(env_file: Path | None, request: dict[str, object]) -> dict[str, object]:
    """Through the running lamp when there is one; else straight to its files. A lamp not
    enrolled yet has its looks too (``device set`` before the token is pasted)."""
    settings = load_or_unenrolled(env_file)
    try:
        return ask_owner(settings.state_dir, request)
    except NoLampRunningError:
        pass
    return owner_settings.answer_offline(settings, env_file=env_file, request=request)


# -- pair ------------------------------------------------------------------------------------------
# The relay's reasons say what happened and, mostly, what to do; these name the commands.
_HINTS = {
    "expired-code": "ask the other lamp's owner to run `touchlamp pair new` again",
    "not-paired": "pair it with `touchlamp pair new` here, or `touchlamp pair join CODE`",
    "already-paired": "nothing to do",
}


def _pair(args: argparse.Namespace) -> int:
    settings = load_settings(DeviceSettings, env_file=args.env_file)
    action: PairAction = args.action
    code = getattr(args, "code", None)
    if code is not None:
        code = code.strip().replace(" ", "")
    try:
        request = PairRequest(action=action, code=code)
    except ValueError:
        print(
            f"touchlamp: {code!r} is not a pairing code (4-16 letters and digits)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    response = _ask(settings, request, timeout=args.timeout)
    if not response.ok:
        reason = response.reason or "the relay refused without saying why"
        hint = _HINTS.get(response.error or "")
        print(f"touchlamp: {reason}" + (f" ({hint})" if hint else ""), file=sys.stderr)
        return EXIT_FAILURE
    print(_describe(response, settings.lamp_id))
    return EXIT_OK


def _ask(settings: DeviceSettings, request: PairRequest, *, timeout: float) -> PairResponse:
    """Through the running lamp when there is one (see control.py), else a link of our own."""
    try:
        return ask_running_lamp(settings.state_dir, request, timeout=timeout)
    except NoLampRunningError:
        pass
    # No service holds the lamp's connection; events that arrive meanwhile (a glow) are not
    # shown, and the outbox keeps any queued touch for the service.
    try:
        with LampLink.from_settings(settings, sink=lambda _event: None) as link:
            return link.request(request, timeout=timeout)
    finally:
        # Root running this for a stopped service must not leave it databases it cannot open.
        state_owned_like_its_directory(settings.state_dir)


def _describe(response: PairResponse, lamp_id: str) -> str:
    others = [member for member in response.members if member != lamp_id]
    with_others = ", ".join(others) if others else "no other lamp yet"
    match response.action:
        case PairAction.CREATE:
            expires = ""
            if response.expires_at is not None:
                moment = dt.datetime.fromtimestamp(response.expires_at / 1000, dt.UTC)
                expires = f", valid until {moment.astimezone():%H:%M}"
            return (
                f"Pairing code: {response.code}{expires}.\n"
                f"On the other lamp, run: touchlamp pair join {response.code}"
            )
        case PairAction.JOIN:
            return f"Joined group {response.group}: now with {with_others}."
        case PairAction.LEAVE:
            return "Left the group; this lamp is not paired now."
        case _:
            if response.group is None:
                return "Not paired. Make a code with `touchlamp pair new`, or join one."
            return f"Paired in group {response.group} with {with_others}."
