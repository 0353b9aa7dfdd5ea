"""Password hashing matches Mosquitto's own, so the JSON we write needs no plaintext."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from touchlamp.broker.passwords import PBKDF2_ITERATIONS, generate_password, hash_password


def test_a_hash_from_mosquitto_ctrl_is_reproduced() -> None:
    # From `mosquitto_ctrl dynsec init d.json admin secretpw` (Mosquitto 2.0.11).
    salt = base64.b64decode("hbT7EpXA6T/o1rRS")
    hashed = hash_password("secretpw", salt=salt, iterations=101)
    assert hashed.hash_b64 == (
        "wZDq9/Qn9O9QEOzmMy0dL7z8OJOf0krOMWwDNlRgmE2+yCyWho0x0CJMjmMm+DMRacKyFpkz8BEKYGEwLgqQyQ=="
    )
    assert hashed.salt_b64 == "hbT7EpXA6T/o1rRS"


@pytest.mark.skipif(shutil.which("mosquitto_ctrl") is None, reason="needs mosquitto_ctrl")
def test_hashes_made_by_this_machines_mosquitto_ctrl_verify(tmp_path: Path) -> None:
    store = tmp_path / "dynsec.json"
    subprocess.run(
        ["mosquitto_ctrl", "dynsec", "init", str(store), "admin", "a password"],
        check=True,
        capture_output=True,
    )
    client = json.loads(store.read_text(encoding="utf-8"))["clients"][0]
    ours = hash_password(
        "a password", salt=base64.b64decode(client["salt"]), iterations=client["iterations"]
    )
    assert ours.hash_b64 == client["password"]
    assert ours.matches("a password")
    assert not ours.matches("another password")


def test_fresh_hashes_use_fresh_salts() -> None:
    first, second = hash_password("same"), hash_password("same")
    assert first.salt_b64 != second.salt_b64
    assert first.hash_b64 != second.hash_b64
    assert first.iterations == PBKDF2_ITERATIONS
    assert first.matches("same")


def test_generated_passwords_differ_and_are_safe_in_env_files() -> None:
    passwords = {generate_password() for _ in range(50)}
    assert len(passwords) == 50
    assert all(p.replace("-", "").replace("_", "").isalnum() for p in passwords)


def test_an_empty_password_is_refused() -> None:
    with pytest.raises(ValueError, match="empty password"):
        hash_password("")
