"""``StopSignals``: real signals sent to this process (pytest runs tests in its main thread)."""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType

import pytest

from touchlamp.stopping import STOP_SIGNALS, StopSignals, uninterrupted


@pytest.mark.parametrize("signum", STOP_SIGNALS, ids=lambda signum: signum.name)
def test_each_stop_signal_ends_wait_and_is_named(
    signum: signal.Signals, capfd: pytest.CaptureFixture[str]
) -> None:
    with StopSignals() as stop:
        assert not stop.wait(timeout=0.01)
        assert not stop.is_set()
        os.kill(os.getpid(), signum)
        assert stop.wait()
        assert stop.wait(timeout=0)  # and stays requested
        assert stop.received is signum
    assert f"touchlamp: {signum.name}, stopping" in capfd.readouterr().err


def test_a_signal_from_another_thread_wakes_a_blocked_wait() -> None:
    with StopSignals() as stop:
        timer = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGHUP))
        timer.start()
        try:
            assert stop.wait()  # no timeout: only the signal can end this
        finally:
            timer.join()
        assert stop.received is signal.SIGHUP


def test_the_previous_handlers_are_back_after_the_block() -> None:
    seen: list[int] = []

    def mine(signum: int, _frame: FrameType | None) -> None:
        seen.append(signum)

    before = signal.signal(signal.SIGHUP, mine)
    try:
        with StopSignals():
            assert signal.getsignal(signal.SIGHUP) is not mine
        assert signal.getsignal(signal.SIGHUP) is mine
        os.kill(os.getpid(), signal.SIGHUP)
        assert seen == [signal.SIGHUP]
    finally:
        signal.signal(signal.SIGHUP, before)


def test_until_ready_a_signal_interrupts_and_a_second_one_does_not(
    capfd: pytest.CaptureFixture[str],
) -> None:
    with StopSignals(interrupt_until_ready=True) as stop:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs, and raises, right here
        os.kill(os.getpid(), signal.SIGINT)  # while cleaning up: reported, not raised
        assert stop.received is signal.SIGTERM
    assert "touchlamp: SIGINT: already stopping…" in capfd.readouterr().err


def test_after_ready_a_signal_only_requests_a_stop() -> None:
    with StopSignals(interrupt_until_ready=True) as stop:
        stop.ready()
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(timeout=10)


def test_quiet_says_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    with StopSignals(quiet=True) as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(timeout=10)
    assert capfd.readouterr().err == ""


def test_an_interrupt_waits_for_the_end_of_an_uninterrupted_block() -> None:
    """Start-up steps that must not be cut in two (a child started and its pid recorded): the
    signal is taken at once, its interrupt is raised only when the block ends."""
    finished: list[signal.Signals | None] = []

    def hold_then_finish(stop: StopSignals) -> None:
        with uninterrupted():
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs here, and holds back
            finished.append(stop.received)  # the rest of the block still runs

    with StopSignals(interrupt_until_ready=True) as stop:
        with pytest.raises(KeyboardInterrupt):
            hold_then_finish(stop)
        assert finished == [signal.SIGTERM]
        with uninterrupted():  # the held interrupt was raised once, not again
            pass


def test_an_uninterrupted_block_without_a_signal_changes_nothing() -> None:
    with StopSignals(interrupt_until_ready=True) as stop:
        with uninterrupted():
            pass
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)  # outside a block: interrupts at once
        assert stop.received is signal.SIGTERM
