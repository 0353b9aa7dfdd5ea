"""The enrolment a lamp's owner pasted on its page: ``STATE_DIR/enrolment.json``.

A lamp installed without a token (``touchlamp device run`` with no lamp id) serves its page and
offers to paste one (device/owner_page.py). The service's env file is read-only to the lamp
(``/etc/touchlamp``), so the token's values go to this file in the writable state directory
instead: the lamp id and the broker login, shaped like ``DeviceSettings``
(``{"lamp_id": …, "mqtt": {…}}``). A private CA from the token goes beside it
(``enrolment-ca.pem``, 0644: a certificate is public).

As a settings source it sits below the owner's ``settings.json`` (which never holds the broker)
and above the env file, so a token pasted on the page wins over an older ``device enroll`` in
the env file; the environment (``TOUCHLAMP_DEVICE_…`` set by hand) still wins over both. The
file holds the lamp's password: written whole or not at all, 0600, owned like its directory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from touchlamp.config.lamp_file import (
    LampFileError,
    LampFileSettingsSource,
    owned_like_its_directory,
)
from touchlamp.files import write_atomically
from touchlamp.protocol import Enrollment

__all__ = [
    "ENROLMENT_CA_FILE",
    "ENROLMENT_FILE",
    "EnrolmentFileSettingsSource",
    "read_enrolment_file",
    "write_enrolment_file",
]

ENROLMENT_FILE = "enrolment.json"
ENROLMENT_CA_FILE = "enrolment-ca.pem"


def write_enrolment_file(state_dir: Path, enrollment: Enrollment) -> Path:
    """Keep ``enrollment`` as the lamp's identity and broker login; returns the file."""
    state_dir.mkdir(parents=True, exist_ok=True)
    ca_file: str | None = None
    if enrollment.ca:
        ca_path = state_dir / ENROLMENT_CA_FILE
        write_atomically(ca_path, enrollment.ca, mode=0o644)
        owned_like_its_directory(ca_path)
        ca_file = str(ca_path.resolve())
    document = {
        "lamp_id": enrollment.lamp,
        "mqtt": {
            "host": enrollment.host,
            "port": enrollment.port,
            "username": enrollment.lamp,
            "password": enrollment.password,
            "topic_root": enrollment.root,
            "tls": enrollment.tls,
            # Written even when none: an older CA in the env file must not be layered in.
            "ca_file": ca_file,
        },
    }
    path = state_dir / ENROLMENT_FILE
    write_atomically(path, json.dumps(document, indent=2) + "\n", mode=0o600)
    owned_like_its_directory(path)
    return path


def read_enrolment_file(state_dir: Path) -> dict[str, Any]:
    """The file's settings (``{}`` when the lamp was not enrolled on its page)."""
    path = state_dir / ENROLMENT_FILE
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise LampFileError(
            f"cannot read the lamp's enrolment {path} ({error}); delete it and paste the "
            "token again on the lamp's page, or run `touchlamp device enroll TOKEN`"
        ) from None
    if not isinstance(document, dict) or set(document) - {"lamp_id", "mqtt"}:
        raise LampFileError(
            f"the lamp's enrolment {path} holds more than a lamp id and its broker login; "
            "delete it and paste the token again on the lamp's page"
        )
    return document


class EnrolmentFileSettingsSource(LampFileSettingsSource):
    """``STATE_DIR/enrolment.json`` as a pydantic-settings source; the state directory is
    found as for the owner's file (``LampFileSettingsSource``)."""

    def __call__(self) -> dict[str, Any]:
        return read_enrolment_file(self.state_dir())
