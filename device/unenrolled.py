"""A lamp without a token yet: it lights, serves its page and waits for its owner to paste one.

``touchlamp device run`` on a lamp with no lamp id (installed, never enrolled) used to exit 2
before any page existed, and the service's env file is read-only to it. Now it runs under the
placeholder id ``UNENROLLED_ID`` with ``UnenrolledLink`` in place of its MQTT link: the LED
shows the "not enrolled" look (``looks.not_enrolled``), a touch is refused (there is nobody to
send to), a hold still claims the lamp, and the page (device/owner_page.py) offers to paste the
token. ``Enroller`` takes it: decoded as ``touchlamp device enroll`` decodes it
(``decode_token``), kept in ``STATE_DIR/enrolment.json`` (config/enrolment_file.py), then the
run restarts in-process with the settings that now hold a lamp id (device/cli.py).

Why a restart of the run and not a link swapped into the running lamp: the lamp id, the
outbox, the control socket, the Home Assistant bridge and the page's address all hang on the
lamp id, fixed when they are built. Rebuilding them the way a start builds them is the path
every lamp already takes; the state directory and the owner's claim stay the same.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from touchlamp.config.common import SettingsError, load_settings
from touchlamp.config.device import DeviceSettings
from touchlamp.config.enrolment_file import ENROLMENT_FILE, write_enrolment_file
from touchlamp.device.events import Disconnected
from touchlamp.device.link_api import LinkError, TouchReceipt
from touchlamp.errors import TouchlampError
from touchlamp.mqtt.wakeup import Wakeup
from touchlamp.protocol import Enrollment, PairRequest, PairResponse, ProtocolError, decode_token

__all__ = [
    "NOT_ENROLLED_EVENT",
    "UNENROLLED_ID",
    "Enroller",
    "EnrolmentRefusedError",
    "UnenrolledLink",
    "load_or_unenrolled",
]

UNENROLLED_ID = "unenrolled"
"""The lamp id a lamp without a token runs under (its page is ``/lamps/unenrolled/``)."""

_NOT_ENROLLED = (
    "this lamp is not enrolled yet: paste its token on the lamp's page (the relay's operator "
    "prints it with `touchlamp relay lamp add`)"
)


class EnrolmentRefusedError(TouchlampError, ValueError):
    """A token that cannot enrol this lamp; the message says why and what to do."""


NOT_ENROLLED_EVENT = Disconnected(not_enrolled=True)
"""What to ``post`` to the lamp's agent so that it shows the "not enrolled" look."""


class UnenrolledLink:
    """The link of a lamp with no token: never connects, refuses everything with the fix."""

    def __init__(self) -> None:
        self._wakeup: Wakeup | None = None

    def open(self, wakeup: Wakeup) -> None:
        self._wakeup = wakeup

    def serve(self, timeout: float | None) -> None:
        """Nothing to serve: only the agent's own wake-ups end the wait."""
        if self._wakeup is not None:
            self._wakeup.wait(timeout)

    def stop(self, *, timeout: float = 5.0) -> None:
        pass

    def shown(self) -> None:
        """Nothing was handed on: nothing to record."""

    def send_touch(self, color: str) -> TouchReceipt:  # noqa: ARG002  AgentLink's signature
        raise LinkError(_NOT_ENROLLED)

    def send_request(
        self,
        request: PairRequest,  # noqa: ARG002  AgentLink's signature
        *,
        expiry_seconds: int = 60,  # noqa: ARG002
    ) -> bytes:
        raise LinkError(_NOT_ENROLLED)

    def request(
        self,
        request: PairRequest,  # noqa: ARG002  PairingLink's signature
        *,
        timeout: float = 10.0,  # noqa: ARG002
    ) -> PairResponse:
        raise LinkError(_NOT_ENROLLED)


def load_or_unenrolled(env_file: Path | None) -> DeviceSettings:
    """The lamp's settings; a lamp that no source gives an id runs as ``UNENROLLED_ID``.

    Only a *missing* lamp id makes a lamp unenrolled: any other bad setting, a bad id included,
    still stops start-up with its message (exit 2).
    """
    try:
        return load_settings(DeviceSettings, env_file=env_file)
    except SettingsError:
        if _names_lamp_id(env_file):
            raise
        try:
            return load_settings(DeviceSettings, env_file=env_file, lamp_id=UNENROLLED_ID)
        except SettingsError:
            pass
        raise


def _names_lamp_id(env_file: Path | None) -> bool:
    variable = "TOUCHLAMP_DEVICE_LAMP_ID"
    if variable in os.environ:
        return True
    if env_file is None or not env_file.is_file():
        return False
    for line in env_file.read_text(encoding="utf-8", errors="replace").splitlines():
        name = line.strip().removeprefix("export ").split("=", 1)[0].strip().upper()
        if name == variable:
            return True
    return False


class Enroller:
    """Takes the token pasted on an unenrolled lamp's page (any thread, once)."""

    def __init__(self, *, state_dir: Path, env_file: Path | None) -> None:
        self._state_dir = state_dir
        self._env_file = env_file
        self._lock = threading.Lock()
        self.enrolled = threading.Event()
        """Set once a token was kept: the run restarts as the enrolled lamp."""
        self.lamp_id: str | None = None

    def enrol(self, token: str) -> Enrollment:
        """Decode and keep ``token``; ``EnrolmentRefusedError`` (nothing written) if it is bad."""
        with self._lock:
            if self.enrolled.is_set():
                raise EnrolmentRefusedError(
                    f"this lamp was just enrolled as {self.lamp_id}; reload the page"
                )
            try:
                enrollment = decode_token(token.strip())
            except ProtocolError as error:
                raise EnrolmentRefusedError(
                    f"the {error}; nothing was changed (copy the whole token as "
                    "`touchlamp relay lamp add` printed it)"
                ) from None
            try:
                write_enrolment_file(self._state_dir, enrollment)
            except OSError as error:
                raise EnrolmentRefusedError(
                    f"cannot keep the token in {self._state_dir} ({error}); check that the "
                    "lamp's state directory is writable and has free space"
                ) from None
            try:
                load_settings(DeviceSettings, env_file=self._env_file)
            except SettingsError as error:
                # Take it back: a lamp that would not start is worse than one still waiting.
                (self._state_dir / ENROLMENT_FILE).unlink(missing_ok=True)
                raise EnrolmentRefusedError(
                    f"the token was not kept: with it the lamp's settings are wrong ({error})"
                ) from None
            self.lamp_id = enrollment.lamp
            self.enrolled.set()
            return enrollment
