"""Bad messages are logged safely: no terminal escapes, bounded length, once per interval."""

from __future__ import annotations

from tests.support.clock import FakeClock
from touchlamp.server.badmessages import LogThrottle, safe_excerpt


def test_escape_sequences_and_newlines_are_shown_not_executed() -> None:
    excerpt = safe_excerpt(b"\x1b[2J\x1b]0;owned\x07line\r\nnext\xe2\x80\xaeevil")
    assert "\x1b" not in excerpt
    assert "\r" not in excerpt
    assert "\n" not in excerpt
    assert "\u202e" not in excerpt  # right-to-left override
    assert "\\x1b[2J" in excerpt
    assert "line" in excerpt


def test_invalid_utf8_is_escaped() -> None:
    assert safe_excerpt(b"ok\xff\xfe") == "ok\\xff\\xfe"


def test_long_payloads_are_cut_and_their_size_is_given() -> None:
    excerpt = safe_excerpt(b"x" * 100_000, limit=80)
    assert excerpt == "x" * 80 + "… (100000 bytes)"


def test_short_payloads_are_shown_whole() -> None:
    assert safe_excerpt(b'{"seq": 1}') == '{"seq": 1}'


def test_one_line_per_key_per_interval_and_the_rest_are_counted() -> None:
    clock = FakeClock()
    throttle = LogThrottle(interval=60, clock=clock)
    assert throttle.should_log("lamp-a")
    assert not throttle.should_log("lamp-a")
    assert not throttle.should_log("lamp-a")
    assert throttle.should_log("lamp-b")
    clock.advance(60)
    assert throttle.should_log("lamp-a")
    assert throttle.take_suppressed("lamp-a") == 2
    assert throttle.take_suppressed("lamp-a") == 0
