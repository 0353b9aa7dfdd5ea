"""What ``scripts/setup`` installs lets the browser test's driver run: Playwright's own node
needs libatomic.so.1, which a minimal Debian lacks ("error while loading shared libraries")."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import playwright

DRIVER_NODE = Path(playwright.__file__).parent / "driver" / "node"


def test_playwrights_driver_finds_every_shared_library_it_needs() -> None:
    ldd = shutil.which("ldd")
    assert ldd is not None, "ldd (Debian package libc-bin) is missing"
    linked = subprocess.run([ldd, str(DRIVER_NODE)], capture_output=True, text=True, check=True)
    assert "not found" not in linked.stdout, (
        f"{linked.stdout}\nscripts/setup installs what is missing (libatomic1 for libatomic.so.1)"
    )
    started = subprocess.run(
        [sys.executable, "-m", "playwright", "--version"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert started.returncode == 0, started.stderr
    assert started.stdout.startswith("Version ")


def test_setup_installs_libatomic1_with_the_browser() -> None:
    setup = (Path(__file__).resolve().parents[2] / "scripts" / "setup").read_text("utf-8")
    browser_part = setup.split('if [ "${TOUCHLAMP_SKIP_BROWSER:-0}" != 1 ]; then', 1)[1]
    assert "need+=(libatomic1)" in browser_part.split("\nfi\n", 1)[0]
