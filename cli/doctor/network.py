"""The broker seen from the network: its host resolves, its port answers, its TLS certificate
verifies (and plain MQTT only where that is safe)."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

from touchlamp.config.mqtt import BrokerConnection
from touchlamp.doctor.findings import Finding, Outcome, fail, ok, skip
from touchlamp.doctor.probes import Probes
from touchlamp.mqtt.tls import CAFileError, tls_context

__all__ = ["Reached", "check_broker", "check_reachable", "check_tls"]


def check_reachable(host: str, port: int, timeout: float, prefix: str) -> Finding:
    started = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout):
            elapsed = time.monotonic() - started
    except socket.gaierror as error:
        return fail(
            f"the broker's host name {host} does not resolve ({error.strerror})",
            f"check {prefix}__HOST, and the network (ping {host})",
        )
    except OSError as error:
        reason = error.strerror or type(error).__name__
        return fail(
            f"the broker {host}:{port} is not reachable ({reason})",
            f"check {prefix}__HOST/PORT and the network; on the broker's host: "
            "sudo systemctl status mosquitto (and a firewall letting the port through)",
        )
    return ok(f"the broker {host}:{port} is reachable ({elapsed * 1000:.0f} ms)")


@dataclass(frozen=True, slots=True)
class Reached:
    """The broker answered (and its certificate verified, with TLS on)."""

    context: ssl.SSLContext | None


def check_broker(
    mqtt_settings: BrokerConnection, probes: Probes, *, prefix: str, then: str
) -> Generator[Finding, None, Reached | None]:
    """Reachability, then TLS; ``None`` when the checks named by ``then`` cannot run."""
    host, port = mqtt_settings.host, mqtt_settings.effective_port
    reachable = check_reachable(host, port, probes.timeout, prefix)
    yield reachable
    if reachable.outcome is Outcome.FAIL:
        yield skip(f"TLS, {then}: need a reachable broker")
        return None
    context, tls_finding = check_tls(
        host,
        port,
        tls=mqtt_settings.tls,
        ca_file=mqtt_settings.ca_file,
        timeout=probes.timeout,
        prefix=prefix,
    )
    yield tls_finding
    if tls_finding.outcome is Outcome.FAIL and mqtt_settings.tls:
        yield skip(f"{then}: need a broker whose certificate verifies")
        return None
    return Reached(context)


def check_tls(
    host: str,
    port: int,
    *,
    tls: bool,
    ca_file: Path | None,
    timeout: float,
    prefix: str,
) -> tuple[ssl.SSLContext | None, Finding]:
    if not tls:
        if _is_local(host):
            return None, skip(f"TLS: off (plain MQTT to {host}, on this machine or network)")
        return None, fail(
            f"TLS is off, so the password crosses the internet in clear to {host}",
            f"set {prefix}__TLS=true (and {prefix}__CA_FILE for a private CA)",
        )
    try:
        context = tls_context(ca_file, setting=f"{prefix}__CA_FILE")
    except CAFileError as error:
        return None, fail(
            f"cannot load the CA file {ca_file} ({error.__cause__})",
            f"point {prefix}__CA_FILE at the PEM certificate of the broker's CA",
        )
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host) as wrapped,
        ):
            certificate = wrapped.getpeercert() or {}
    except ssl.SSLCertVerificationError as error:
        return context, fail(
            f"the broker's TLS certificate does not verify ({error.verify_message})",
            f"set {prefix}__CA_FILE to the CA that signed it, and make {prefix}__HOST the name "
            "the certificate was issued for",
        )
    except (OSError, ssl.SSLError) as error:
        return context, fail(
            f"no TLS handshake with {host}:{port} ({error})",
            f"is {port} the broker's TLS port? (8883 by convention; 1883 is plain MQTT)",
        )
    expires = certificate.get("notAfter", "?")
    return context, ok(f"the broker's TLS certificate verifies for {host} (valid until {expires})")


def _is_local(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        local_names = (".local", ".lan", ".home.arpa")
        return host == "localhost" or "." not in host or host.endswith(local_names)
    return address.is_private or address.is_loopback or address.is_link_local
