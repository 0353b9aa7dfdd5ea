"""The relay's glow expiry interval as a lamp learnt it, kept across restarts.

A lamp tells how long the broker kept a glow from what is left of its Message Expiry Interval
(device/incoming.py ``_waited``): the relay gives every glow the same interval, so the most left
on any glow seen is that interval. Learnt only in memory, it was forgotten with the process, and
the glows waiting for a restarted lamp were all taken as 0 s old — so
``LOOKS__GLOW_MAX_AGE_SECONDS`` let a stale one glow (issue 13). The learnt value is kept in
``STATE_DIR/glow-expiry`` and read back at start. Written only when it grows (once, usually).

If the relay's interval is later made *shorter*, the kept value overstates how long glows
waited by the difference, until the state file is deleted; a longer one is learnt at once.
"""

from __future__ import annotations

import logging
from pathlib import Path

from touchlamp.files import write_atomically

__all__ = ["GLOW_EXPIRY_FILE", "load_glow_expiry", "save_glow_expiry"]

_log = logging.getLogger(__name__)

GLOW_EXPIRY_FILE = "glow-expiry"


def load_glow_expiry(state_dir: Path) -> int:
    """The interval learnt on an earlier run, in seconds; 0 when none (or unreadable)."""
    path = state_dir / GLOW_EXPIRY_FILE
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return 0
    except (OSError, UnicodeDecodeError) as error:
        _log.warning("cannot read %s (%s); learning the glow expiry again", path, error)
        return 0
    return int(text) if text.isdigit() else 0


def save_glow_expiry(state_dir: Path, seconds: int) -> None:
    """Keep ``seconds`` (written whole; a failure is logged: it is an optimisation)."""
    path = state_dir / GLOW_EXPIRY_FILE
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(path, f"{seconds}\n", mode=0o644)
    except OSError as error:
        _log.warning("cannot keep the glow expiry in %s (%s)", path, error)
