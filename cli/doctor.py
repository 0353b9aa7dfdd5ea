"""``touchlamp doctor``: checks a lamp's or a relay's set-up and says what to fix."""

from __future__ import annotations

import argparse
from typing import Any

from touchlamp.cli import not_available_yet


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="check settings, broker, credentials, TLS, clock and pairing (not available yet)",
        description="Check a lamp's or a relay's set-up and print the fix for each problem.",
    )
    parser.set_defaults(func=not_available_yet("touchlamp doctor", "see the deployment issue"))
