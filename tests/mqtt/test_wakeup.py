"""The wake-up a select loop waits on (mqtt/wakeup.py): another thread's notify ends the wait,
clear forgets it, and a notify after close does nothing (the number may belong to another file
by then)."""

from __future__ import annotations

import threading

from touchlamp.mqtt.wakeup import Wakeup


def test_a_notify_from_another_thread_ends_the_wait() -> None:
    wakeup = Wakeup()
    try:
        timer = threading.Timer(0.05, wakeup.notify)
        timer.start()
        assert wakeup.wait(30.0)
        timer.join()
    finally:
        wakeup.close()


def test_clear_forgets_every_notify_so_far_and_a_later_one_counts() -> None:
    wakeup = Wakeup()
    try:
        for _ in range(3):
            wakeup.notify()
        assert wakeup.wait(0.0)
        wakeup.clear()
        assert not wakeup.wait(0.0)
        wakeup.notify()
        assert wakeup.wait(0.0)
    finally:
        wakeup.close()


def test_a_notify_after_close_is_harmless() -> None:
    wakeup = Wakeup()
    wakeup.close()
    wakeup.notify()
    wakeup.close()
