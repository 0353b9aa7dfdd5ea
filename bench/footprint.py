"""Benchmark 4 — a lamp's footprint: ``touchlamp device run --simulate``, started and left idle.

Start → online: from starting the process to its retained ``online`` arriving at a watcher
subscribed to the lamp's availability topic (interpreter start-up, imports, settings, outbox,
connect — everything a lamp does after a reboot). Then it idles (connected, nothing to show)
for the idle window: CPU% is the CPU time it used in that window ÷ the window, from
``/proc/<pid>/stat``; memory is ``VmRSS`` at the end and ``VmHWM`` (its peak since start).
``--simulate`` adds the simulator's web page (the standard library's http.server) and mock pins
to what runs on a Pi.

Both run as an installed lamp does after a reboot: with their modules' bytecode already compiled
(pip compiles it at install time). Each is started once beforehand to write it (into the run's
own ``PYTHONPYCACHEPREFIX``, whatever ``PYTHONDONTWRITEBYTECODE`` says): compiling on import
adds ~1.5 MB of RSS that an installed lamp does not have.

Baseline: the least a lamp can be (bench/peer.py ``lamp``: a plain paho client that publishes a
retained ``online`` and subscribes to its glow and group topics), measured the same way, in the
same run, against the same broker. Both idle at the same time; they are started one after the
other so neither start-up competes with the other.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from bench.context import BenchContext
from bench.procfs import cpu_percent, sample
from bench.results import Measure, Result
from bench.site import BenchSite, touchlamp_command
from touchlamp.protocol import Kind

__all__ = ["run"]

_ONLINE_WAIT = 30.0
_SETTLE = 1.0  # after "online": let the connection's first exchanges finish before idling
_TARGET_CPU = 1.0
_TARGET_RSS_MB = 45.0
_TARGET_ONLINE_S = 2.0


@dataclass(frozen=True, slots=True)
class Footprint:
    online_seconds: float
    idle_cpu_percent: float
    rss_mb: float
    hwm_mb: float


def run(context: BenchContext) -> list[Result]:
    idle = context.pick_seconds(full=60.0, quick=15.0, tiny=2.0)
    with (
        BenchSite(context.directory, save_every_change=context.save_every_change) as site,
        _Watcher(site) as watcher,
    ):
        site.add_lamps(["lamp-idle", "lamp-min"])
        secret = site.directory / "lamp-min.password"
        secret.write_text(site.passwords["lamp-min"], encoding="utf-8")
        minimal_command = [
            sys.executable, "-m", "bench.peer", "lamp",
            "--host", site.broker.host, "--port", str(site.broker.port),
            "--username", "lamp-min", "--password-file", str(secret),
            "--root", site.topics.root,
        ]  # fmt: skip
        device_command = [*touchlamp_command("device", "run", "--simulate", "--web-port", "0")]
        bytecode = {"PYTHONPYCACHEPREFIX": str(site.directory / "pycache")}
        for warm_up in (
            watcher.start("lamp-min", minimal_command, env=bytecode),
            watcher.start("lamp-idle", device_command, env=_device_env(site, "lamp-idle")),
        ):
            _end(warm_up.process)
        minimal = watcher.start("lamp-min", minimal_command, env=bytecode)
        device = watcher.start("lamp-idle", device_command, env=_device_env(site, "lamp-idle"))
        try:
            time.sleep(_SETTLE)
            firsts = [sample(minimal.process.pid), sample(device.process.pid)]
            time.sleep(idle)
            lasts = [sample(minimal.process.pid), sample(device.process.pid)]
        finally:
            for started in (device, minimal):
                _end(started.process)
    base, ours = (
        Footprint(
            online_seconds=round(started.online_seconds, 3),
            idle_cpu_percent=round(cpu_percent(first, last), 2),
            rss_mb=round(last.rss_bytes / 1e6, 1),
            hwm_mb=round(last.hwm_bytes / 1e6, 1),
        )
        for started, first, last in zip((minimal, device), firsts, lasts, strict=True)
    )
    context.say(f"  device: {_describe(ours)}")
    context.say(f"  plain paho lamp: {_describe(base)}")
    details: dict[str, object] = {
        "idle_seconds": idle,
        "device": asdict(ours),
        "plain_paho_lamp": asdict(base),
        "command": "touchlamp device run --simulate (web page on, mock pins)",
    }
    return [
        Result(
            bench="footprint",
            figure=Measure("idle CPU", ours.idle_cpu_percent, "%"),
            baseline=Measure("plain paho lamp", base.idle_cpu_percent, "%"),
            target=f"≤ {_TARGET_CPU:g} %",
            met=ours.idle_cpu_percent <= _TARGET_CPU,
            details=details,
        ),
        Result(
            bench="footprint",
            figure=Measure("RSS", ours.rss_mb, "MB"),
            baseline=Measure("plain paho lamp", base.rss_mb, "MB"),
            target=f"≤ {_TARGET_RSS_MB:g} MB",
            met=ours.rss_mb <= _TARGET_RSS_MB,
            details={"hwm_mb": ours.hwm_mb, "baseline_hwm_mb": base.hwm_mb},
        ),
        Result(
            bench="footprint",
            figure=Measure("start → online", ours.online_seconds, "s"),
            baseline=Measure("plain paho lamp", base.online_seconds, "s"),
            target=f"≤ {_TARGET_ONLINE_S:g} s",
            met=ours.online_seconds <= _TARGET_ONLINE_S,
        ),
    ]


def _end(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, and wait (closing its stdin)."""
    process.terminate()
    process.communicate(timeout=30)


def _describe(footprint: Footprint) -> str:
    return (
        f"online in {footprint.online_seconds:.2f} s, idle CPU {footprint.idle_cpu_percent:.2f} %, "
        f"RSS {footprint.rss_mb:.1f} MB (peak {footprint.hwm_mb:.1f} MB)"
    )


def _device_env(site: BenchSite, lamp_id: str) -> dict[str, str]:
    return {
        "PYTHONPYCACHEPREFIX": str(site.directory / "pycache"),
        "TOUCHLAMP_DEVICE_LAMP_ID": lamp_id,
        "TOUCHLAMP_DEVICE_STATE_DIR": str(site.directory / lamp_id),
        "TOUCHLAMP_DEVICE_MQTT__HOST": site.broker.host,
        "TOUCHLAMP_DEVICE_MQTT__PORT": str(site.broker.port),
        "TOUCHLAMP_DEVICE_MQTT__PASSWORD": site.passwords[lamp_id],
        "TOUCHLAMP_DEVICE_MQTT__TOPIC_ROOT": site.topics.root,
    }


@dataclass(frozen=True, slots=True)
class _Started:
    process: subprocess.Popen[bytes]
    online_seconds: float


class _Watcher:
    """A client with the relay's login watching every lamp's availability (as the relay does)."""

    def __init__(self, site: BenchSite) -> None:
        self._site = site
        self._online: dict[str, float] = {}
        self._changed = threading.Condition()
        self._subscribed = threading.Event()
        self._client: mqtt.Client | None = None

    def __enter__(self) -> _Watcher:
        site = self._site
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id="bench-watcher",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        client.username_pw_set(*site.relay_login("bench-watcher"))
        client.on_message = self._on_message
        client.on_subscribe = lambda *_args: self._subscribed.set()
        client.connect(site.broker.host, site.broker.port)
        client.loop_start()
        client.subscribe(site.topics.every(Kind.AVAILABILITY), qos=1)
        if not self._subscribed.wait(_ONLINE_WAIT):
            raise TimeoutError("the availability watcher did not subscribe")
        self._client = client
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()

    def start(self, lamp_id: str, command: list[str], *, env: dict[str, str]) -> _Started:
        """Start ``command`` and wait until lamp ``lamp_id`` says it is online."""
        log = (self._site.directory / f"{lamp_id}.log").open("ab")
        with self._changed:
            self._online.pop(lamp_id, None)  # a restart: wait for its new "online"
        started = time.monotonic()
        environment = {**os.environ, **env}
        if "PYTHONPYCACHEPREFIX" in env:
            environment.pop("PYTHONDONTWRITEBYTECODE", None)
        process = subprocess.Popen(
            command,
            env=environment,
            stdin=subprocess.PIPE,  # a peer ends when it closes: with this process, however
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parent.parent,
        )
        log.close()
        with self._changed:
            if not self._changed.wait_for(lambda: lamp_id in self._online, timeout=_ONLINE_WAIT):
                process.kill()
                raise TimeoutError(f"lamp {lamp_id} did not come online within {_ONLINE_WAIT:g} s")
        return _Started(process=process, online_seconds=self._online[lamp_id] - started)

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        if message.payload != b"online":
            return
        lamp_id = message.topic.split("/")[-2]
        with self._changed:
            self._online.setdefault(lamp_id, time.monotonic())
            self._changed.notify_all()
