"""``touchlamp relay …``: run the relay and manage lamps and groups."""

from __future__ import annotations

import argparse
from typing import Any

from touchlamp.cli import not_available_yet


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    relay = subparsers.add_parser("relay", help="run the relay; manage lamps and groups")
    relay.set_defaults(func=not_available_yet("touchlamp relay", "arrives with the relay work"))
