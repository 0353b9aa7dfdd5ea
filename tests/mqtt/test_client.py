"""The one client factory (mqtt/client.py) and its TLS set-up (mqtt/tls.py), through the relay.

The relay used to hand its CA file to paho's ``tls_set``: a file that is not a certificate ended
the relay with an SSL traceback. Every client now loads it through ``tls_context``, which names
the setting to fix and exits 2 (a configuration error).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from touchlamp.config.relay import RelaySettings
from touchlamp.errors import EXIT_USAGE, TouchlampError
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
