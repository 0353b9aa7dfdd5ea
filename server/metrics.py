"""The relay's Prometheus metrics and its ``/metrics`` + ``/healthz`` endpoint.

Each relay owns a ``CollectorRegistry`` (not the process-wide default), so several relays in one
process — the tests run that way — do not collide. The endpoint is prometheus_client's WSGI app
served by the standard library's wsgiref on a loopback port; ``/healthz`` answers 200 while the
relay is connected to the broker and 503 otherwise (for systemd watchdogs and load balancers).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

from touchlamp.lifecycle import StopsOnExit
from touchlamp.server.forwarding import DropReason

__all__ = ["MetricsServer", "RelayMetrics"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class RelayMetrics:
    """Every metric the relay exports. Counters are safe to bump from any thread."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.touches_received = Counter(
            "touchlamp_relay_touches_received", "Touch messages taken from the broker", registry=r
        )
        self.touches_forwarded = Counter(
            "touchlamp_relay_touches_forwarded",
            "Touches whose glows were handed to the broker",
            registry=r,
        )
        self.touches_resent = Counter(
            "touchlamp_relay_touches_resent",
            "Touches the broker redelivered (DUP) after an unfinished earlier attempt and whose "
            "glows were handed to the broker again (lamps drop a glow they have shown)",
            registry=r,
        )
        self.glows_forwarded = Counter(
            "touchlamp_relay_glows_forwarded", "Glow messages published to lamps", registry=r
        )
        self.glows_kept = Counter(
            "touchlamp_relay_glows_kept",
            "Glows the broker answered 'no matching subscribers' (the lamp had no session or "
            "had not subscribed again yet) or refused for now, kept to send again",
            registry=r,
        )
        self.glows_resent = Counter(
            "touchlamp_relay_glows_resent",
            "Kept glows sent again (the lamp came back, or a retry)",
            registry=r,
        )
        self.glows_dropped = Counter(
            "touchlamp_relay_glows_dropped",
            "Glows given up: refused by the broker, expired while kept, or over the bound",
            ["reason"],
            registry=r,
        )
        for why in ("refused", "expired", "overflow"):
            self.glows_dropped.labels(reason=why)
        self.glows_waiting = Gauge(
            "touchlamp_relay_glows_waiting",
            "Glows kept for lamps that were away, waiting for them to come back",
            registry=r,
        )
        self.touches_dropped = Counter(
            "touchlamp_relay_touches_dropped",
            "Touches not forwarded, by reason",
            ["reason"],
            registry=r,
        )
        for reason in DropReason:
            self.touches_dropped.labels(reason=reason.value)
        self.rate_limited = Counter(
            "touchlamp_relay_rate_limited", "Touches dropped by the per-lamp rate limit", registry=r
        )
        self.duplicates = Counter(
            "touchlamp_relay_duplicates",
            "Touches dropped because (lamp, stream, seq) was already forwarded",
            registry=r,
        )
        self.bad_messages = Counter(
            "touchlamp_relay_bad_messages",
            "Messages that did not follow the protocol, by topic kind",
            ["kind"],
            registry=r,
        )
        self.pair_requests = Counter(
            "touchlamp_relay_pair_requests",
            "Pairing requests answered, by action and outcome",
            ["action", "outcome"],
            registry=r,
        )
        self.forward_latency = Histogram(
            "touchlamp_relay_forward_latency_seconds",
            "From a touch arriving at the relay to its glows being handed to the broker",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.lamps_online = Gauge(
            "touchlamp_relay_lamps_online",
            "Registered lamps whose availability is online",
            registry=r,
        )
        self.queue_depth = Gauge(
            "touchlamp_relay_queue_depth", "Messages received but not yet handled", registry=r
        )
        self.connected = Gauge(
            "touchlamp_relay_connected", "1 while connected to the broker", registry=r
        )

    def count_drop(self, reason: DropReason) -> None:
        self.touches_dropped.labels(reason=reason.value).inc()
        if reason is DropReason.RATE_LIMITED:
            self.rate_limited.inc()
        elif reason is DropReason.DUPLICATE:
            self.duplicates.inc()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  stdlib's signature
        """Scrapes every few seconds would drown the relay's own log."""


Environ = dict[str, Any]
StartResponse = Callable[..., Any]


class MetricsServer(StopsOnExit):
    """Serves ``/metrics`` and ``/healthz`` from a daemon thread until ``stop()``."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        registry: CollectorRegistry,
        healthy: Callable[[], bool],
    ) -> None:
        metrics_app = make_wsgi_app(registry)

        def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
            if environ.get("PATH_INFO") == "/healthz":
                ok = healthy()
                status = "200 OK" if ok else "503 Service Unavailable"
                body = b"connected\n" if ok else b"not connected to the broker\n"
                start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
                return [body]
            result: Iterable[bytes] = metrics_app(environ, start_response)
            return result

        self._server: WSGIServer = make_server(host, port, app, handler_class=_QuietHandler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="relay-metrics", daemon=True
        )

    @property
    def port(self) -> int:
        """The bound port (useful when the configured port was taken by the OS's choice)."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        # shutdown() waits for serve_forever to end: for ever if it never began.
        if self._thread.ident is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()
