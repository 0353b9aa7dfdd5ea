"""``write_atomically``: the new file whole with its mode, or the old one untouched."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from touchlamp.files import write_atomically


def _listing(directory: Path) -> list[str]:
    return sorted(entry.name for entry in directory.iterdir())


def test_writes_text_and_bytes_with_the_mode_asked_for_whatever_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o077)  # would narrow 0644 to 0600 if the mode went through it
    try:
        write_atomically(tmp_path / "unit.service", "[Unit]\n", mode=0o644)
        write_atomically(tmp_path / "password", b"s3cret\n", mode=0o600)
    finally:
        os.umask(previous)

    assert (tmp_path / "unit.service").read_text() == "[Unit]\n"
    assert stat.S_IMODE((tmp_path / "unit.service").stat().st_mode) == 0o644
    assert (tmp_path / "password").read_bytes() == b"s3cret\n"
    assert stat.S_IMODE((tmp_path / "password").stat().st_mode) == 0o600
    assert _listing(tmp_path) == ["password", "unit.service"]


def test_replaces_the_content_and_the_mode_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "device.env"
    path.write_text("OLD=1\n")
    path.chmod(0o644)

    write_atomically(path, "NEW=2 ✓\n", mode=0o600)

    assert path.read_text(encoding="utf-8") == "NEW=2 ✓\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert _listing(tmp_path) == ["device.env"]


def test_a_disk_that_refuses_the_write_leaves_the_old_file_intact(tmp_path: Path) -> None:
    # A real refusal, not a mock: a file-size limit makes the kernel refuse the write (EFBIG),
    # as a full SD card would. Set in a child process, so pytest's own files are not limited.
    path = tmp_path / "dynamic-security.json"
    path.write_text('{"old": true}\n')
    child = textwrap.dedent(
        f"""
        import resource, signal, sys
        from pathlib import Path
        from touchlamp.files import write_atomically

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an error, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        try:
            write_atomically(Path({str(path)!r}), b"x" * 100_000, mode=0o600)
        except OSError as error:
            sys.exit(error.errno)
        """
    )
    finished = subprocess.run([sys.executable, "-c", child], check=False, timeout=60)

    assert finished.returncode == errno.EFBIG
    assert path.read_text() == '{"old": true}\n'
    assert _listing(tmp_path) == ["dynamic-security.json"]


def test_a_failing_fsync_leaves_the_old_file_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An SD card that fails to flush: the new content may never have reached it, so the old
    # file must stay in place rather than a name pointing at lost blocks.
    path = tmp_path / "color"
    path.write_text("#ff0000\n")

    def failing_fsync(_descriptor: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="Input/output error"):
        write_atomically(path, "#00ff00\n", mode=0o644)

    assert path.read_text() == "#ff0000\n"
    assert _listing(tmp_path) == ["color"]


def test_a_path_that_cannot_be_replaced_is_left_alone(tmp_path: Path) -> None:
    taken = tmp_path / "settings.json"
    taken.mkdir()  # a directory where the file should go: the rename fails

    with pytest.raises(IsADirectoryError):
        write_atomically(taken, "{}\n", mode=0o600)

    assert taken.is_dir()
    assert _listing(tmp_path) == ["settings.json"]
