"""The one client factory (mqtt/client.py) and its TLS set-up (mqtt/tls.py), through the relay.

The relay used to hand its CA file to paho's ``tls_set``: a file that is not a certificate ended
the relay with an SSL traceback. Every client now loads it through ``tls_context``, which names
the setting to fix and exits 2 (a configuration error).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from touchlamp.config.relay import RelaySettings
from touchlamp.errors import EXIT_USAGE, TouchlampError
from touchlamp.mqtt.client import new_client
from touchlamp.server.relay import Relay
from touchlamp.server.store import open_store


def test_a_ca_file_the_relay_cannot_load_names_the_setting(tmp_path: Path) -> None:
    not_a_certificate = tmp_path / "ca.pem"
    not_a_certificate.write_text("this is not a PEM certificate\n")
    settings = RelaySettings(
        mqtt={"host": "127.0.0.1", "port": 1, "tls": True, "ca_file": not_a_certificate}
    )
    with open_store(tmp_path / "relay.sqlite3") as store, pytest.raises(TouchlampError) as raised:
        Relay(settings=settings, store=store)
    assert raised.value.exit_code == EXIT_USAGE
    message = str(raised.value)
    assert str(not_a_certificate) in message
    assert "TOUCHLAMP_RELAY_MQTT__CA_FILE" in message


class _Kept(logging.Handler):
    """A handler without a level of its own, as ``logging.basicConfig`` installs."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_paho_noise_is_demoted_and_not_shown_below_the_loggers_level() -> None:
    # paho logs these at its ERR level; a command's log at WARNING showed the demoted one.
    name = "tests.mqtt.levels.paho"
    new_client("levels", username=None, log_as=name)
    paho_logger = logging.getLogger(name)
    kept = _Kept()
    paho_logger.addHandler(kept)
    paho_logger.setLevel(logging.WARNING)
    try:
        paho_logger.error("Client is not connected. Socket: None")
        paho_logger.error("failed to receive on socket: %s", "reset by peer")
    finally:
        paho_logger.removeHandler(kept)
        paho_logger.setLevel(logging.NOTSET)
    assert [(record.levelno, record.getMessage()) for record in kept.records] == [
        (logging.WARNING, "failed to receive on socket: reset by peer")
    ]
