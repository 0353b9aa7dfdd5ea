"""The guard over child processes' logs (tests/support/child_logs.py, tests/conftest.py): an error a
relay or lamp process logs to a file under the test's ``tmp_path`` fails the test."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.support.child_logs import errors_in

_STAMP = "2026-12-06 13:40:01,123"


def test_error_records_of_touchlamp_loggers_are_found_with_or_without_a_stamp() -> None:
    log = "\n".join(
        [
            f"{_STAMP} INFO touchlamp.server.relay: forwarding",
            f"{_STAMP} ERROR touchlamp.server.relay: store write failed",
            "CRITICAL touchlamp.device.agent: the lamp cannot light",  # under the journal
            f"{_STAMP} WARNING touchlamp.device.link: reconnecting",
            f"{_STAMP} ERROR paho.mqtt.client: not ours",
        ]
    )
    assert errors_in(log) == [
        f"{_STAMP} ERROR touchlamp.server.relay: store write failed",
        "CRITICAL touchlamp.device.agent: the lamp cannot light",
    ]


def test_a_logged_exception_counts_once_and_an_uncaught_one_counts_too() -> None:
    log = textwrap.dedent(
        f"""\
        {_STAMP} ERROR touchlamp.server.relay: callback failed
        Traceback (most recent call last):
          File "relay.py", line 1, in on_message
        RuntimeError: boom
        {_STAMP} INFO touchlamp.server.relay: forwarding
        Exception in thread worker:
        Traceback (most recent call last):
          File "worker.py", line 2, in run
        ValueError: bad
        """
    )
    assert errors_in(log) == [
        f"{_STAMP} ERROR touchlamp.server.relay: callback failed",
        "Exception in thread worker:",
    ]


def test_a_process_that_died_of_an_exception_is_found() -> None:
    log = f"{_STAMP} INFO touchlamp.server.relay: forwarding\nTraceback (most recent call last):\n"
    assert errors_in(log) == ["Traceback (most recent call last):"]


# The inner session runs in this process with the project's conftest (as test_log_guard.py).
def test_a_childs_error_fails_the_test_unless_the_test_allows_it(
    pytester: pytest.Pytester,
) -> None:
    conftest = Path(__file__).parent / "conftest.py"
    pytester.makeconftest(conftest.read_text(encoding="utf-8"))
    pytester.makepyfile(
        textwrap.dedent(
            f"""
            import pytest

            LINE = "{_STAMP} ERROR touchlamp.server.relay: store write failed"

            def test_a_relay_child_logged_an_error(tmp_path):
                (tmp_path / "relay-1.log").write_text(LINE + "\\n")

            @pytest.mark.allow_child_errors(r"store write failed")
            def test_that_error_is_provoked_on_purpose(tmp_path):
                (tmp_path / "relay-1.log").write_text(LINE + "\\n")

            @pytest.mark.allow_child_errors(r"something else")
            def test_another_error_is_still_caught(tmp_path):
                (tmp_path / "state" / "lamp-a").mkdir(parents=True)
                (tmp_path / "state" / "lamp-a" / "device.log").write_text(LINE + "\\n")

            def test_a_clean_log_passes(tmp_path):
                (tmp_path / "relay-1.log").write_text("{_STAMP} INFO touchlamp.x: fine\\n")
            """
        )
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    # Each test passes its own phase; the guard turns two teardowns into errors.
    result.assert_outcomes(passed=4, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*child processes logged 1 error(s)*",
            "*relay-1.log: * ERROR touchlamp.server.relay: store write failed*",
        ]
    )
    result.stdout.fnmatch_lines(["*state/lamp-a/device.log: *store write failed*"])
