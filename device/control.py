"""The running lamp's control socket, so ``touchlamp pair …`` asks through the lamp's own link.

A lamp's MQTT client id is its lamp id, and the broker allows one connection per client id: a
second connection (a ``pair`` command opening its own) would take over the service's session,
kick it off and receive its glows. So ``touchlamp device run`` listens on a Unix socket in its
state directory (``control.sock``, mode 0600) and ``touchlamp pair`` hands its request to the
running lamp there; only when no lamp is running does the command connect by itself.

The exchange is one line each way: the ``PairRequest`` as JSON (the wire's form), then either the
``PairResponse`` as JSON or ``{"error": "…"}`` when the link could not ask (offline, no answer).

``touchlamp device show`` and ``device set`` ask the same socket about the owner's settings
(device/owner_settings.py): ``{"owner": "show"}`` or ``{"owner": "set", "changes": {KEY: VALUE}}``,
answered with ``{"values": [{"key", "value", "source", "meaning"}, …], "lamp": {…}}`` or
``{"error": "…", "key": KEY, "bad_setting": true}`` (nothing was changed).
The accept loop is a thread blocked in ``accept()``; each connection gets a short-lived thread,
because ``LampLink.request`` waits for the relay's answer.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from touchlamp.config.lamp_file import LampFileError
from touchlamp.device.link_api import LinkError
from touchlamp.device.owner_settings import OwnerSettingError, OwnerSettings, answer
from touchlamp.errors import TouchlampError
from touchlamp.lifecycle import StopsOnExit
from touchlamp.protocol import (
    PairRequest,
    PairResponse,
    ProtocolError,
    decode_pair_request,
    decode_pair_response,
    encode,
)

__all__ = [
    "CONTROL_SOCKET",
    "ControlError",
    "ControlServer",
    "LampDescription",
    "NoLampRunningError",
    "RequestLink",
    "ask_owner",
    "ask_running_lamp",
]

_log = logging.getLogger(__name__)

CONTROL_SOCKET = "control.sock"
"""The socket's name inside the lamp's state directory."""

_MAX_LINE = 8192
_CLIENT_TIMEOUT = 5.0


class ControlError(TouchlampError, RuntimeError):
    """The running lamp could not carry out the request; the message says why."""


class NoLampRunningError(ControlError):
    """No lamp service listens in this state directory."""


class RequestLink(Protocol):
    def request(self, request: PairRequest, *, timeout: float = 10.0) -> PairResponse: ...


class LampDescription(Protocol):
    def __call__(self) -> dict[str, object]:
        """The lamp as ``device show`` prints it (JSON-able: name, colour, members, online)."""
        ...


class ControlServer(StopsOnExit):
    """Listens on ``state_dir/control.sock`` and passes pairing requests to ``link``, and the
    owner's ``show`` / ``set`` to ``owner`` (with ``describe`` for the lamp's state)."""

    def __init__(
        self,
        *,
        state_dir: Path,
        link: RequestLink,
        request_timeout: float = 10.0,
        owner: OwnerSettings | None = None,
        describe: LampDescription | None = None,
    ) -> None:
        self._path = state_dir / CONTROL_SOCKET
        self._link = link
        self._timeout = request_timeout
        self._owner = owner
        self._describe = describe
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    @property
    def path(self) -> Path:
        return self._path

    def start(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        if _answers(self._path):
            raise ControlError(
                f"another lamp service already runs with state directory {self._path.parent}; "
                "stop it first (two services would fight over one lamp's connection)"
            )
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()  # a stale socket left by a killed service
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        previous = os.umask(0o177)  # the socket is born 0600: only the lamp's user may pair it
        try:
            with _address(self._path) as address:
                sock.bind(address)
        finally:
            os.umask(previous)
        sock.listen(4)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="lamp-control", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        # shutdown() wakes the thread blocked in accept(); close() alone may not.
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        if self._thread is not None:
            self._thread.join(_CLIENT_TIMEOUT)
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()

    def _serve(self) -> None:
        sock = self._sock
        while sock is not None:
            try:
                connection, _ = sock.accept()
            except OSError:
                return  # stopped
            threading.Thread(
                target=self._answer, args=(connection,), name="lamp-control-request", daemon=True
            ).start()

    def _answer(self, connection: socket.socket) -> None:
        with connection:
            connection.settimeout(self._timeout + _CLIENT_TIMEOUT)
            try:
                line = _read_line(connection)
                owner_request = _owner_request(line)
                if owner_request is not None:
                    reply = self._owner_answer(owner_request)
                    with contextlib.suppress(OSError):
                        connection.sendall(reply + b"\n")
                    return
                request = decode_pair_request("control socket", line)
                reply = encode(self._link.request(request, timeout=self._timeout))
            except ProtocolError as error:
                reply = _error(f"not a pairing request: {error.reason}")
            except LinkError as error:
                reply = _error(str(error))
            except OSError as error:
                _log.warning("control socket: a request was cut off (%s)", error)
                return
            with contextlib.suppress(OSError):
                connection.sendall(reply + b"\n")

    def _owner_answer(self, request: dict[str, object]) -> bytes:
        if self._owner is None:
            return _error("this lamp does not take settings through its control socket")
        lamp = self._describe() if self._describe is not None else {}
        try:
            return json.dumps(answer(self._owner, request, lamp=lamp)).encode()
        except OwnerSettingError as error:
            return json.dumps({"error": str(error), "key": error.key, "bad_setting": True}).encode()
        except (ValueError, LampFileError) as error:
            return _error(str(error))


def ask_owner(
    state_dir: Path, request: dict[str, object], *, timeout: float = 15.0
) -> dict[str, object]:
    """Send an owner request (``{"owner": "show"}``…) to the lamp running with ``state_dir``.

    ``NoLampRunningError`` if none is; ``OwnerSettingError`` for a bad key or value.
    """
    line = _exchange(state_dir, json.dumps(request).encode(), timeout=timeout)
    try:
        data = json.loads(line)
    except ValueError:
        raise ControlError("the lamp service answered nonsense (not JSON)") from None
    if not isinstance(data, dict):
        raise ControlError("the lamp service answered nonsense (not a JSON object)")
    if "error" in data:
        if data.get("bad_setting"):
            key = data.get("key")
            raise OwnerSettingError(str(data["error"]), key=key if isinstance(key, str) else None)
        raise ControlError(str(data["error"]))
    return data


def _owner_request(line: bytes) -> dict[str, object] | None:
    try:
        data = json.loads(line)
    except ValueError:
        return None
    return data if isinstance(data, dict) and "owner" in data else None


def ask_running_lamp(
    state_dir: Path, request: PairRequest, *, timeout: float = 15.0
) -> PairResponse:
    """Ask the lamp service running with ``state_dir``; ``NoLampRunningError`` if none is."""
    line = _exchange(state_dir, encode(request), timeout=timeout)
    try:
        data = json.loads(line)
    except ValueError:
        data = None
    if isinstance(data, dict) and set(data) == {"error"}:
        raise ControlError(str(data["error"]))
    try:
        return decode_pair_response("control socket", line)
    except ProtocolError as error:
        raise ControlError(f"the lamp service answered nonsense: {error.reason}") from None


def _exchange(state_dir: Path, message: bytes, *, timeout: float) -> bytes:
    """One line to the lamp service running with ``state_dir``, one line back."""
    path = state_dir / CONTROL_SOCKET
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            with _address(path) as address:
                sock.connect(address)
        except (FileNotFoundError, ConnectionRefusedError):
            raise NoLampRunningError(f"no lamp service listens on {path}") from None
        except PermissionError:
            raise ControlError(
                f"the lamp service runs as another user and {path} is theirs; "
                "run this command with sudo"
            ) from None
        try:
            sock.sendall(message + b"\n")
            return _read_line(sock)
        except TimeoutError:
            raise ControlError(f"the lamp service did not answer within {timeout:g} s") from None
        except OSError as error:
            raise ControlError(f"the lamp service hung up ({error})") from None


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            with _address(path) as address:
                probe.connect(address)
        except OSError:
            return False
    return True


_MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes, the last a NUL (unix(7))


@contextlib.contextmanager
def _address(path: Path) -> Iterator[str]:
    """``path`` as a Unix socket address, however deep the state directory lies.

    A socket's path may be at most 107 bytes, and a state directory may sit deeper than that
    (a test's temporary directory, a home directory with a long name). Linux resolves
    ``/proc/self/fd/N/NAME`` through the open directory N, so a long path is reached by that
    short one, for ``bind`` and ``connect`` alike.
    """
    if len(os.fsencode(path)) <= _MAX_SOCKET_PATH:
        yield str(path)
        return
    directory = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{directory}/{path.name}"
    finally:
        os.close(directory)


def _read_line(sock: socket.socket) -> bytes:
    data = b""
    while b"\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > _MAX_LINE:
            raise ConnectionError(f"a control message longer than {_MAX_LINE} bytes")
    return data.split(b"\n", 1)[0]


def _error(message: str) -> bytes:
    return json.dumps({"error": message}).encode()
