"""Subcommands that run lamps: ``demo``, ``sim``, ``device`` and ``pair``."""

from __future__ import annotations

import argparse
from typing import Any

from touchlamp.cli import not_available_yet

_ISSUE = "arrives with the device/simulator work"


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    demo = subparsers.add_parser(
        "demo", help="broker, relay and two simulated lamps you can touch in a browser"
    )
    demo.set_defaults(func=not_available_yet("touchlamp demo", _ISSUE))
    sim = subparsers.add_parser("sim", help="run N simulated lamps with a web page")
    sim.set_defaults(func=not_available_yet("touchlamp sim", _ISSUE))
    device = subparsers.add_parser("device", help="run, enroll or self-test a lamp")
    device.set_defaults(func=not_available_yet("touchlamp device", _ISSUE))
    pair = subparsers.add_parser("pair", help="pair this lamp with others by code")
    pair.set_defaults(func=not_available_yet("touchlamp pair", _ISSUE))
