"""One error base: every touchlamp error is a ``TouchlampError`` carrying its exit code, and
``touchlamp`` turns one that ends a command into its message and that code (touchlamp.errors)."""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

import touchlamp
from touchlamp.broker.errors import BrokerError
from touchlamp.cli import main
from touchlamp.config.common import SettingsError
from touchlamp.config.lamp_file import LampFileError
from touchlamp.device.gpio import GpioUnavailableError
from touchlamp.device.hardware import HardwareError, MissingExtraError
from touchlamp.device.link_api import LinkError, LinkTimeoutError
from touchlamp.device.owner_settings import OwnerSettingError
from touchlamp.device.sim import SimulatorError
from touchlamp.errors import EXIT_FAILURE, EXIT_USAGE, ConfigurationError, TouchlampError
from touchlamp.mqtt.tls import CAFileError
from touchlamp.protocol import ProtocolError
from touchlamp.server.relay import RelayAuthError
from touchlamp.server.store import StoreError, UnknownLampError

# Settings, arguments or hardware that cannot work as set up: systemd must not restart on them.
_CONFIGURATION_ERRORS = {
    ConfigurationError,
    SettingsError,
    LampFileError,
    HardwareError,
    MissingExtraError,
    GpioUnavailableError,
    OwnerSettingError,
    SimulatorError,
    RelayAuthError,
    CAFileError,  # a CA file named in the settings that cannot be loaded
}


def _touchlamp_exceptions() -> Iterator[type[BaseException]]:
    """Every exception class defined in a module of the package (``__main__`` runs the CLI)."""
    for module_info in pkgutil.walk_packages(touchlamp.__path__, "touchlamp."):
        if module_info.name.endswith(".__main__"):
            continue
        module = importlib.import_module(module_info.name)
        for _name, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__ == module.__name__:
                yield value


def test_every_error_of_the_project_is_a_touchlamp_error_with_an_exit_code() -> None:
    classes = set(_touchlamp_exceptions())

    ours = {cls for cls in classes if issubclass(cls, TouchlampError)}

    assert len(classes) >= 40  # the walk found the package, not an empty namespace
    assert classes - ours == set()
    assert {cls for cls in ours if cls.exit_code == EXIT_USAGE} == _CONFIGURATION_ERRORS
    assert {cls.exit_code for cls in ours} == {EXIT_FAILURE, EXIT_USAGE}


def test_errors_keep_the_builtin_bases_their_callers_catch() -> None:
    assert issubclass(SettingsError, ValueError)
    assert issubclass(ProtocolError, ValueError)
    assert issubclass(LinkTimeoutError, LinkError)
    assert issubclass(LinkTimeoutError, TimeoutError)
    assert issubclass(BrokerError, RuntimeError)
    assert issubclass(UnknownLampError, KeyError)
    assert issubclass(UnknownLampError, StoreError)
    # KeyError quotes its argument; the store's message still reads as written.
    assert str(UnknownLampError("no lamp lamp-a")) == "no lamp lamp-a"


def test_an_error_that_ends_a_command_is_its_message_its_exit_code_and_systemds_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A lamp's settings given twice: the simulator cannot tell the two apart. This error once
    # ended the command with a traceback; now it is the message, exit 2 and systemd's status.
    env_file = tmp_path / "lamp-a.env"
    env_file.write_text(
        "TOUCHLAMP_DEVICE_LAMP_ID=lamp-a\n"
        "TOUCHLAMP_DEVICE_MQTT__PASSWORD=s3cret\n"
        f"TOUCHLAMP_DEVICE_STATE_DIR={tmp_path / 'state'}\n"
    )
    for name in list(os.environ):
        if name.startswith("TOUCHLAMP_DEVICE_"):
            monkeypatch.delenv(name)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(str(tmp_path / "notify"))
        systemd.settimeout(0)  # it was sent before main returned
        monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))

        code = main(["sim", "--env-file", str(env_file), "--env-file", str(env_file)])

        status = systemd.recv(4096).decode()
    message = "each simulated lamp needs its own lamp id, got ['lamp-a', 'lamp-a']"
    assert code == EXIT_USAGE
    assert capsys.readouterr().err == f"touchlamp: {message}\n"
    assert status == f"STATUS=stopped: {message}"
