"""``touchlamp broker …``: run a managed Mosquitto, write its config for an operator."""

from __future__ import annotations

import argparse
from typing import Any

from touchlamp.cli import not_available_yet


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    broker = subparsers.add_parser("broker", help="run Mosquitto or write its config")
    broker.set_defaults(func=not_available_yet("touchlamp broker", "arrives with the broker work"))
