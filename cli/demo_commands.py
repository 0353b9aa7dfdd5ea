"""The ``demo`` and ``sim`` commands: simulated lamps you can touch in a browser.

::

    touchlamp demo [--web-port P] [--state-dir DIR] [--no-browser] [--homeassistant URL]
    touchlamp sim --env-file F [--env-file F …] [--web-port P]   lamps enrolled with a relay
    touchlamp sim --lamps N [--state-dir DIR] [--web-port P]      N lamps, own broker and relay
      (sim also takes --homeassistant mqtt://[USER:PASSWORD@]HOST:PORT)

Their arguments and the choice between the two ways of running them; the demo itself (a broker,
a relay and paired lamps) is ``touchlamp.demo``, the simulator's page ``device/simulate.py``.

Exit codes: 0 done, 1 refused or failed (the message says why and what to do), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from touchlamp.arguments import port_number
from touchlamp.config.common import load_settings
from touchlamp.config.device import DeviceSettings, HomeAssistantSettings
from touchlamp.device.homeassistant_settings import settings_from_url, with_home_assistant
from touchlamp.errors import EXIT_USAGE

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    # The demo (touchlamp.demo) pulls in the relay and the broker launcher, and the simulator
    # (simulate.py) the page: both are imported only by the command that runs them.
    web = argparse.ArgumentParser(add_help=False)
    web.add_argument(
        "--web-port",
        type=port_number,
        default=None,
        help="the page's port on 127.0.0.1 (default 8080 for the demo, else a free one; "
        "0 picks a free one)",
    )
    web.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="where the broker, relay and lamps keep their files (default "
        "$XDG_STATE_HOME/touchlamp/demo for the demo, …/touchlamp/sim for sim; "
        "XDG_STATE_HOME is ~/.local/state by default)",
    )
    web.add_argument(
        "--homeassistant",
        type=_home_broker,
        default=None,
        metavar="URL",
        help="make the lamps appear in the Home Assistant on this MQTT broker: "
        "mqtt://[USER:PASSWORD@]HOST:PORT (mqtts:// for TLS)",
    )
    demo = subparsers.add_parser(
        "demo",
        parents=[web],
        help="broker, relay and two simulated lamps you can touch in a browser",
    )
    demo.add_argument(
        "--no-browser", action="store_true", help="print the page's address, do not open it"
    )
    demo.set_defaults(func=_demo)
    sim = subparsers.add_parser(
        "sim",
        parents=[web],
        help="run simulated lamps with a web page (enrolled ones, or N with their own broker)",
    )
    sim.add_argument(
        "--env-file",
        type=Path,
        action="append",
        default=[],
        help="a lamp's settings (from `device enroll`); repeat for more lamps",
    )
    sim.add_argument(
        "--lamps",
        type=int,
        default=None,
        help="without --env-file: start a broker and a relay and pair N lamps (default 2)",
    )
    sim.set_defaults(func=_sim)


def _home_broker(text: str) -> HomeAssistantSettings:
    try:
        return settings_from_url(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _demo(args: argparse.Namespace) -> int:
    from touchlamp import demo  # noqa: PLC0415  pulls in the relay and the broker launcher

    return demo.run_demo(
        lamps=2,
        web_port=8080 if args.web_port is None else args.web_port,
        state_dir=args.state_dir or demo.DEFAULT_STATE_DIR,
        open_browser=not args.no_browser,
        homeassistant=args.homeassistant,
    )


def _sim(args: argparse.Namespace) -> int:
    web_port = 0 if args.web_port is None else args.web_port
    if args.env_file:
        if args.lamps is not None or args.state_dir is not None:
            print(
                "touchlamp: --env-file runs lamps already enrolled with a relay; "
                "--lamps and --state-dir are for lamps with their own broker: choose one",
                file=sys.stderr,
            )
            return EXIT_USAGE
        from touchlamp.device import simulate  # noqa: PLC0415  the page, only for this command

        lamps = [load_settings(DeviceSettings, env_file=path) for path in args.env_file]
        # Each lamp's page names its env file as a source of its settings.
        env_files = {lamp.lamp_id: path for lamp, path in zip(lamps, args.env_file, strict=True)}
        if args.homeassistant is not None:
            lamps = [with_home_assistant(lamp, args.homeassistant, web_port) for lamp in lamps]
        return simulate.run_simulator(lamps=lamps, web_port=web_port, env_files=env_files)
    from touchlamp import demo  # noqa: PLC0415  pulls in the relay and the broker launcher

    count = 2 if args.lamps is None else args.lamps
    if not 1 <= count <= demo.MAX_LAMPS:
        print(f"touchlamp: --lamps must be 1 to {demo.MAX_LAMPS}", file=sys.stderr)
        return EXIT_USAGE
    return demo.run_demo(
        lamps=count,
        web_port=web_port,
        # Not the demo's: a demo and a sim run side by side would take each other's lamps.
        state_dir=args.state_dir or demo.DEFAULT_STATE_DIR.with_name("sim"),
        open_browser=False,
        homeassistant=args.homeassistant,
        name="sim",
    )
