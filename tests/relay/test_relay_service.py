"""The relay as an operator runs it: `touchlamp relay run`, SIGTERM, /metrics and /healthz."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tests.relay.live import Site
from tests.support.broker import BrokerFixture
from tests.support.ports import free_port
from tests.support.waiting import WAIT, wait_until
from touchlamp.server.metrics import MetricsServer
from touchlamp.server.relay import Relay


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310  loopback http
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def metrics_once_it_has(metrics_port: int, line: str) -> str | None:
    """The /metrics text once it has ``line``; None before (asserting a 200 every time)."""
    status, text = get(f"http://127.0.0.1:{metrics_port}/metrics")
    assert status == 200, text
    return text if line in text.splitlines() else None


def test_relay_run_forwards_until_sigterm_then_exits_cleanly(site: Site, tmp_path: Path) -> None:
    a, b = site.lamp("lamp-a"), site.lamp("lamp-b")
    site.pair(a, b)
    settings = site.settings()
    metrics_port = free_port()
    env = {
        **os.environ,
        "TOUCHLAMP_RELAY_MQTT__HOST": settings.mqtt.host,
        "TOUCHLAMP_RELAY_MQTT__PORT": str(settings.mqtt.port),
        "TOUCHLAMP_RELAY_MQTT__USERNAME": settings.mqtt.username,
        "TOUCHLAMP_RELAY_MQTT__CLIENT_ID": settings.mqtt.client_id,
        "TOUCHLAMP_RELAY_MQTT__TOPIC_ROOT": settings.mqtt.topic_root,
        "TOUCHLAMP_RELAY_METRICS_PORT": str(metrics_port),
        "TOUCHLAMP_RELAY_STATE_DIR": str(tmp_path / "state"),
    }
    secret = tmp_path / "relay.password"
    assert settings.mqtt.password is not None
    secret.write_text(settings.mqtt.password.get_secret_value() + "\n")
    env_file = tmp_path / "relay.env"
    env_file.write_text(
        f"TOUCHLAMP_RELAY_MQTT__PASSWORD_FILE={secret}\n"
        # The store the test's lamps are registered in.
        f"TOUCHLAMP_RELAY_STORE_URL={tmp_path / 'relay.sqlite3'}\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "touchlamp", "-v", "relay", "run", "--env-file", str(env_file)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        for line in process.stderr:
            if "connected to" in line and "forwarding" in line:
                break
        else:
            raise AssertionError(f"relay run exited early with {process.wait()}")
        status, text = get(f"http://127.0.0.1:{metrics_port}/healthz")
        assert status == 200, text
        a.touch(1)
        assert [glow.sender for glow in b.wait_glows(1)] == ["lamp-a"]
        # The glow can reach lamp-b before the relay has counted it: wait for the count.
        counted = "touchlamp_relay_touches_forwarded_total 1.0"
        text = wait_until(
            lambda: metrics_once_it_has(metrics_port, counted), "the relay to count the touch"
        )
        assert 'touchlamp_relay_touches_dropped_total{reason="duplicate"} 0.0' in text
        process.send_signal(signal.SIGTERM)
        assert process.wait(WAIT) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


def test_relay_run_with_a_wrong_password_says_so_and_exits_2(site: Site, tmp_path: Path) -> None:
    settings = site.settings()
    env = {
        **os.environ,
        "TOUCHLAMP_RELAY_MQTT__HOST": settings.mqtt.host,
        "TOUCHLAMP_RELAY_MQTT__PORT": str(settings.mqtt.port),
        "TOUCHLAMP_RELAY_MQTT__USERNAME": settings.mqtt.username,
        "TOUCHLAMP_RELAY_MQTT__PASSWORD": "not-the-password",
        "TOUCHLAMP_RELAY_STATE_DIR": str(tmp_path / "state"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "touchlamp", "relay", "run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert result.returncode == 2
    assert "refused the relay's login" in result.stderr
    assert "TOUCHLAMP_RELAY_MQTT__PASSWORD" in result.stderr


def test_healthz_follows_the_broker_connection(site: Site) -> None:
    broker = site.broker
    assert isinstance(broker, BrokerFixture)
    relay = Relay(settings=site.settings(), store=site.store)
    server = MetricsServer(
        host="127.0.0.1", port=0, registry=relay.metrics.registry, healthy=lambda: relay.connected
    )
    server.start()
    url = f"http://127.0.0.1:{server.port}/healthz"
    try:
        assert get(url)[0] == 503
        relay.start()
        wait_until(lambda: get(url)[0] == 200, "healthy once connected")
        broker.managed.stop()
        wait_until(lambda: get(url)[0] == 503, "unhealthy without the broker")
        broker.managed.start()
        wait_until(lambda: get(url)[0] == 200, "healthy again after reconnecting")
    finally:
        relay.stop()
        server.stop()
