"""A real Home Assistant core (2024.3.3, from ``.venv-ha``; ``scripts/setup-homeassistant``) for
tests: configured, started and stopped by the test, never the machine's own.

Home Assistant is configured the way its own UI would have left it, by files in its config
directory: ``configuration.yaml`` for HTTP on a free loopback port and the frontend;
``.storage/core.config_entries`` for the MQTT integration (not YAML since 2022.12);
``.storage/onboarding`` marked done; ``.storage/auth`` with one owner and a long-lived access
token, whose JWT the test signs itself (HS256 with the token's ``jwt_key``, as Home Assistant's
``async_create_access_token`` does). It runs with ``--skip-pip``: the venv has every
requirement, and nothing is installed at run time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from tests.support.children import stop_child
from tests.support.ports import free_port
from touchlamp.broker.parent_watch import ParentWatch

__all__ = ["HA_VENV", "HomeAssistantCore"]

HA_VENV = Path(__file__).resolve().parents[2] / ".venv-ha"
_START_TIMEOUT = 120.0
_TOKEN_SECONDS = 10 * 365 * 24 * 3600


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(claims: dict[str, Any], key: str) -> str:
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims).encode())
    signature = hmac.new(key.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64(signature)}"


def _storage(key: str, data: object, *, version: int = 1) -> str:
    return json.dumps({"version": version, "minor_version": 1, "key": key, "data": data})


class HomeAssistantCore:
    """``start()`` against an MQTT broker; ``get``/``post`` its REST API with ``token``."""

    def __init__(
        self, directory: Path, *, mqtt_host: str, mqtt_port: int, username: str, password: str
    ) -> None:
        self.directory = directory
        self.port = 0
        self._mqtt = {
            "broker": mqtt_host,
            "port": mqtt_port,
            "username": username,
            "password": password,
            "discovery": True,
            "discovery_prefix": "homeassistant",
        }
        self._process: subprocess.Popen[bytes] | None = None
        self._watcher: ParentWatch | None = None
        self.refresh_token_id = secrets.token_hex(16)
        self._jwt_key = secrets.token_hex(64)
        self.token = _jwt(
            {
                "iss": self.refresh_token_id,
                "iat": int(time.time()) - 60,
                "exp": int(time.time()) + _TOKEN_SECONDS,
            },
            self._jwt_key,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.directory / "home-assistant.log"

    def _write_config(self) -> None:
        storage = self.directory / ".storage"
        storage.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        (self.directory / "configuration.yaml").write_text(
            "homeassistant:\n"
            "  name: Home\n"
            "  latitude: 52.52\n"
            "  longitude: 13.40\n"
            "  elevation: 34\n"
            "  unit_system: metric\n"
            "  time_zone: Europe/Berlin\n"
            "  country: DE\n"
            "  currency: EUR\n"
            "http:\n"
            "  server_host: 127.0.0.1\n"
            f"  server_port: {self.port}\n"
            "frontend:\n"
            "config:\n"
            "api:\n"
        )
        user_id = secrets.token_hex(16)
        (storage / "auth").write_text(
            _storage(
                "auth",
                {
                    "users": [
                        {
                            "id": user_id,
                            "group_ids": ["system-admin"],
                            "is_owner": True,
                            "is_active": True,
                            "name": "Owner",
                            "system_generated": False,
                            "local_only": False,
                        }
                    ],
                    "groups": [{"id": "system-admin", "name": "Administrators"}],
                    "credentials": [],
                    "refresh_tokens": [
                        {
                            "id": self.refresh_token_id,
                            "user_id": user_id,
                            "client_id": None,
                            "client_name": "touchlamp tests",
                            "client_icon": None,
                            "token_type": "long_lived_access_token",
                            "created_at": "2024-03-01T00:00:00+00:00",
                            "access_token_expiration": float(_TOKEN_SECONDS),
                            "token": secrets.token_hex(64),
                            "jwt_key": self._jwt_key,
                            "last_used_at": None,
                            "last_used_ip": None,
                            "expire_at": None,
                            "credential_id": None,
                            "version": "2024.3.3",
                        }
                    ],
                },
            )
        )
        (storage / "onboarding").write_text(
            _storage(
                "onboarding",
                {"done": ["user", "core_config", "analytics", "integration"]},
                version=4,
            )
        )
        (storage / "core.config_entries").write_text(
            _storage(
                "core.config_entries",
                {
                    "entries": [
                        {
                            "entry_id": secrets.token_hex(16),
                            "version": 1,
                            "minor_version": 1,
                            "domain": "mqtt",
                            "title": "Home broker",
                            "data": self._mqtt,
                            "options": {},
                            "pref_disable_new_entities": False,
                            "pref_disable_polling": False,
                            "source": "user",
                            "unique_id": None,
                            "disabled_by": None,
                        }
                    ]
                },
            )
        )

    def start(self) -> None:
        self._write_config()
        # Killed with the test run, Home Assistant goes too (broker/parent_watch.py).
        with (self.directory / "watch.log").open("ab") as watch_log:
            watcher = self._watcher = ParentWatch(watch_log)
        self._process = subprocess.Popen(
            [
                str(HA_VENV / "bin" / "hass"),
                "--config",
                str(self.directory),
                "--skip-pip",
                "--log-file",
                str(self.log_file),
                "--log-no-color",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        watcher.watch(self._process.pid)
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"Home Assistant exited; its log ends:\n{self.log_tail()}")
            try:
                if self.get("/api/").get("message") == "API running.":
                    return
            except (OSError, urllib.error.URLError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"Home Assistant did not serve its API within {_START_TIMEOUT:g} s; "
                    f"its log ends:\n{self.log_tail()}"
                )
            time.sleep(0.25)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_file.exists():
            return "(no log)"
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    def _request(self, method: str, path: str, body: object | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310  our own loopback Home Assistant
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310  same
            text = response.read().decode()
        try:
            return json.loads(text)
        except ValueError:
            return text

    def get(self, path: str) -> Any:
        return self._request("GET", path)

    def post(self, path: str, body: object) -> Any:
        return self._request("POST", path, body)

    def state(self, entity_id: str) -> dict[str, Any] | None:
        """The entity's state object, ``None`` while Home Assistant does not know it."""
        try:
            found: dict[str, Any] = self.get(f"/api/states/{entity_id}")
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise
        return found

    def stop(self) -> None:
        process, self._process = self._process, None
        watcher, self._watcher = self._watcher, None
        stop_child(process, watcher, timeout=30)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()
