"""Untrusted text in log lines and terminals: no escape sequences, no forged lines, bounded size.

The shared helper is ``touchlamp.server.badmessages.safe_excerpt`` (the relay's); the lamp's link
quotes payloads with ``repr`` of the bytes, which is ASCII-only. Both are checked here against
what an attacker would send, and end to end through the live relay and a real lamp link.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.device.link_support import EventLog
from tests.security.world import SecureWorld
from tests.support.waiting import wait_until
from touchlamp.cli import main
from touchlamp.device.events import Connected
from touchlamp.device.link import LampLink
from touchlamp.server.badmessages import safe_excerpt

HOSTILE = {
    "clear screen": b"\x1b[2J\x1b[H",
    "window title (OSC)": b"\x1b]0;owned\x07",
    "8-bit CSI (C1, as UTF-8)": "\u009b31mred".encode(),
    "forged log line": b"ok\n2025-01-01 ERROR touchlamp.server.relay: all lamps removed",
    "carriage return": b"innocent\rEVIL",
    "bidi override": "abc\u202edcba".encode(),
    "zero width and BOM": "a\u200bb\ufeffc".encode(),
    "NUL and DEL": b"a\x00b\x7fc",
    "invalid UTF-8": b"\xff\xfe\xc3",
    "line separator": "a\u2028b\u2029c".encode(),
}
_LIMIT = 80
# The longest excerpt: ``limit`` characters, an ellipsis, and the size of what was cut.
_BOUND = _LIMIT + len("… (268435455 bytes)")


@pytest.mark.parametrize("payload", HOSTILE.values(), ids=HOSTILE.keys())
def test_an_excerpt_shows_hostile_text_as_inert_escapes(payload: bytes) -> None:
    excerpt = safe_excerpt(payload, limit=_LIMIT)
    assert excerpt.isprintable(), excerpt
    assert "\x1b" not in excerpt
    assert "\n" not in excerpt
    assert "\r" not in excerpt


def test_an_excerpt_of_a_huge_payload_is_bounded_and_says_its_size() -> None:
    huge = b"\x1b[2J" * 1_000_000
    excerpt = safe_excerpt(huge, limit=_LIMIT)
    assert len(excerpt) <= _BOUND
    assert excerpt.endswith(f"({len(huge)} bytes)")
    assert excerpt.isprintable()


@given(payload=st.binary(max_size=2000) | st.text(max_size=500).map(str.encode))
def test_any_excerpt_is_one_printable_bounded_line(payload: bytes) -> None:
    excerpt = safe_excerpt(payload, limit=_LIMIT)
    assert excerpt.isprintable()
    assert len(excerpt) <= _BOUND


def test_the_relays_log_line_about_a_hostile_payload_is_inert(
    world: SecureWorld, caplog: pytest.LogCaptureFixture
) -> None:
    attacker = world.mischief("lamp-m", world.enroll("lamp-m", in_legit_group=True))
    hostile = b"".join(HOSTILE.values()) + b"A" * 3000
    for kind in (world.topics.touch("lamp-m"), world.topics.availability("lamp-m")):
        attacker.publish(kind, hostile)
    world.exchange()  # the relay has handled both by now (one worker, in order)
    lines = [
        record.getMessage()
        for record in caplog.records
        if record.name.startswith("touchlamp.server") and "lamp-m" in record.getMessage()
    ]
    assert len(lines) == 2, lines
    for line in lines:
        assert line.isprintable(), line
        assert len(line) < 600, len(line)


def test_the_lamps_log_line_about_a_hostile_glow_is_inert(
    world: SecureWorld, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    events = EventLog()
    link = LampLink(
        lamp_id="lamp-t",
        password=world.broker.add_lamp("lamp-t"),
        sink=events,
        state_dir=tmp_path / "lamp-t",
        host=world.broker.host,
        port=world.broker.port,
        topic_root=world.topics.root,
    )
    link.start()
    try:
        events.wait_for(Connected)
        relay_login = world.broker.connect_relay()
        hostile = b"".join(HOSTILE.values()) * 100
        relay_login.publish(world.topics.glow("lamp-t"), hostile)
        wait_until(
            lambda: any("dropped a bad message" in r.getMessage() for r in caplog.records),
            "the lamp's log line about the bad glow",
        )
    finally:
        link.stop()
    line = next(r.getMessage() for r in caplog.records if "dropped a bad message" in r.getMessage())
    assert line.isprintable(), line
    assert len(line) < 600, len(line)
    world.exchange()


def test_a_lamp_owner_cannot_put_terminal_escapes_into_the_operators_terminal(
    world: SecureWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    # A lamp names itself (pairing "color" request); the name reaches `relay lamp list` and,
    # through its group's name, the other owners' `touchlamp pair` output.
    attacker = world.mischief("lamp-m", world.enroll("lamp-m", in_legit_group=True))
    request = {"action": "color", "color": "#123456", "name": "\x1b]0;owned\x07\x1b[2Jhi"}
    attacker.publish(
        world.topics.pair("lamp-m"),
        json.dumps(request).encode(),
        response_topic=world.topics.pair_response("lamp-m"),
    )
    world.exchange()
    capsys.readouterr()
    env_file = world.relay_env_file()
    assert main(["relay", "lamp", "list", "--env-file", str(env_file)]) == 0
    shown = capsys.readouterr().out
    assert "\x1b" not in shown
    assert "\x07" not in shown


def test_log_records_are_plain_strings_not_reparsed(caplog: pytest.LogCaptureFixture) -> None:
    """A '%s' in untrusted text is not expanded again: loggers get it as an argument."""
    logging.getLogger("touchlamp.test").warning("payload %s", safe_excerpt(b"%s%s%n%(x)s"))
    assert caplog.records[-1].getMessage() == "payload %s%s%n%(x)s"
