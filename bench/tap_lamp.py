"""Lamp A of the latency benchmark, in a process of its own as a lamp is: the real device code
(``SimulatedLamp``: agent, core, link, outbox on mock pins), tapped when asked.

    python -m bench.tap_lamp --host H --port P --username LAMP --password-file F \\
        --root R --state-dir D --color '#ff3300'

It prints ``ready`` once the lamp is online (and its start-up objects frozen, as ``touchlamp
device run`` does). Each ``tap`` line on its stdin presses and releases the touch pin and prints
``[t]``, ``t`` the ``time.monotonic()`` just before the press (``CLOCK_MONOTONIC``: the same
clock in every process on the machine). It stops the lamp and ends when its stdin closes, so it
never outlives the benchmark.

Why a process of its own: in the benchmark's process, lamp A's work after its touch went out
(the outbox's write, the PUBACK, its own frames) took the interpreter from lamp B just as B's
glow arrived — two lamps that, in use, are in two homes.
"""

from __future__ import annotations

import argparse
import queue
import sys
import threading
import time
from pathlib import Path

from bench.latency import lamp_settings
from touchlamp.device.agent import freeze_start_up_objects
from touchlamp.device.sim import SimulatedLamp

__all__ = ["main"]

_ONLINE_WAIT = 30.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tap_lamp", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--username", required=True, help="the lamp's id (its login)")
    parser.add_argument("--password-file", type=Path, required=True)
    parser.add_argument("--root", required=True, help="the topic root")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--color", required=True)
    args = parser.parse_args(argv)
    settings = lamp_settings(
        lamp_id=args.username,
        color=args.color,
        state_dir=args.state_dir,
        host=args.host,
        port=args.port,
        password=args.password_file.read_text(encoding="utf-8").strip(),
        root=args.root,
    )
    lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
    threading.Thread(target=_read_stdin, args=(lines,), name="stdin", daemon=True).start()
    lamp = SimulatedLamp(settings=settings)
    lamp.start()
    try:
        deadline = time.monotonic() + _ONLINE_WAIT
        while not lamp.agent.online:
            if time.monotonic() > deadline:
                print(f"lamp {args.username} did not come online within {_ONLINE_WAIT:g} s")
                return 1
            try:
                if lines.get(timeout=0.01) is None:
                    return 0  # the benchmark went away before the lamp was online
            except queue.Empty:
                pass
        freeze_start_up_objects()
        _say("ready")
        while (line := lines.get()) is not None:
            if line.strip() != "tap":
                continue
            pressed = time.monotonic()
            lamp.press()
            lamp.release()
            _say(f"[{pressed!r}]")
    finally:
        lamp.stop()
    return 0


def _read_stdin(lines: queue.SimpleQueue[str | None]) -> None:
    """Each line of stdin, then ``None`` once it closes (the benchmark ended, or died)."""
    for line in sys.stdin:
        lines.put(line)
    lines.put(None)


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    raise SystemExit(main())
