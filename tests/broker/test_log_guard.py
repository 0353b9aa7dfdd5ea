"""The shared guard: an ERROR from a touchlamp logger fails the test unless it opts out."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import pytest


@pytest.mark.allow_error_logs
def test_a_test_that_allows_error_logs_passes_despite_one() -> None:
    logging.getLogger("touchlamp.server.relay").error("provoked on purpose")


# The inner session runs in this process, so its error reaches this test's guard too.
@pytest.mark.allow_error_logs
def test_an_error_logged_by_a_touchlamp_logger_fails_the_test(pytester: pytest.Pytester) -> None:
    conftest = Path(__file__).parents[1] / "conftest.py"
    pytester.makeconftest(conftest.read_text(encoding="utf-8"))
    pytester.makepyfile(
        textwrap.dedent(
            """
            import logging, threading

            def test_swallowed_in_a_callback():
                def callback():
                    try:
                        raise RuntimeError("boom")
                    except RuntimeError:
                        logging.getLogger("touchlamp.device.link").exception("callback failed")
                thread = threading.Thread(target=callback)
                thread.start()
                thread.join()

            def test_other_loggers_do_not_count():
                logging.getLogger("paho").error("not ours")
            """
        )
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    # Both tests pass their own phase; the guard turns the first one's teardown into an error.
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*touchlamp.device.link: callback failed*"])
