"""A private CA and the broker's TLS certificate, made with the ``openssl`` command.

``touchlamp broker certs --out DIR --host mqtt.example.net [--ip 192.0.2.10]`` writes::

    DIR/ca.pem        the CA's certificate (public): enrollment tokens carry it, lamps pin it
    DIR/ca.key        the CA's private key (0600): signs the next server certificate
    DIR/server.pem    the broker's certificate, for every --host (DNS) and --ip (IP) given
    DIR/server.key    the broker's private key (0600)

Run it again (new names, or a certificate about to expire) and it keeps the CA and issues a new
server certificate, so lamps enrolled earlier keep trusting the broker without a new token.

Why the ``openssl`` command rather than Python code: it is on every Debian and Raspberry Pi OS
machine Mosquitto runs on, so no new dependency, and no cryptography is written here. The
commands used (``genpkey``, ``req``, ``x509 -req -extfile``) work the same on OpenSSL 1.1.1
(Raspberry Pi OS bullseye) and 3.x. Keys are ECDSA P-256: small, fast on a Pi, and supported by
Mosquitto's and Python's TLS. Private keys never touch the disk with a wider mode than 0600: they
are read from openssl's standard output and written by us.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from touchlamp.broker.errors import BrokerError

__all__ = [
    "CA_CERT_NAME",
    "CA_KEY_NAME",
    "DEFAULT_CA_DAYS",
    "DEFAULT_SERVER_DAYS",
    "SERVER_CERT_NAME",
    "SERVER_KEY_NAME",
    "CertificateError",
    "Certificates",
    "make_certificates",
    "validate_dns_name",
    "validate_ip",
]

CA_CERT_NAME = "ca.pem"
CA_KEY_NAME = "ca.key"
SERVER_CERT_NAME = "server.pem"
SERVER_KEY_NAME = "server.key"
# Twenty years for the CA a lamp pins (re-pinning means re-enrolling every lamp); five for the
# broker's certificate, which re-running the command renews without touching the lamps.
DEFAULT_CA_DAYS = 7300
DEFAULT_SERVER_DAYS = 1825
_TIMEOUT = 60.0
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


class CertificateError(BrokerError):
    """The certificates cannot be made (no openssl, a bad name, an unusable directory)."""


@dataclass(frozen=True, slots=True)
class Certificates:
    """Where ``make_certificates`` put the files, and what the server certificate covers."""

    ca_certificate: Path
    ca_key: Path
    certificate: Path
    key: Path
    names: tuple[str, ...]
    addresses: tuple[str, ...]
    ca_created: bool
    expires: dt.date


def validate_dns_name(name: str) -> str:
    """``name`` in lower case if it is a DNS host name; ``ValueError`` saying why not."""
    lowered = name.strip().lower().rstrip(".")
    labels = lowered.split(".")
    if not lowered or len(lowered) > 253 or not all(_LABEL.fullmatch(part) for part in labels):
        raise ValueError(
            f"{name[:80]!r} is not a host name: use letters, digits, '-' and '.', such as "
            "mqtt.example.net (an IP address goes to --ip)"
        )
    return lowered


def validate_ip(address: str) -> str:
    """``address`` in its canonical form if it is an IPv4 or IPv6 address."""
    try:
        return str(ipaddress.ip_address(address.strip()))
    except ValueError:
        raise ValueError(f"{address[:80]!r} is not an IP address, such as 192.0.2.10") from None


def make_certificates(
    out_dir: Path,
    *,
    hosts: Sequence[str],
    ips: Sequence[str] = (),
    days: int = DEFAULT_SERVER_DAYS,
    ca_days: int = DEFAULT_CA_DAYS,
    openssl: str = "openssl",
) -> Certificates:
    """Create (or keep) the private CA in ``out_dir`` and issue a server certificate with it.

    ``hosts`` become DNS names of the certificate (an IP address among them is moved to the IP
    addresses), ``ips`` its IP addresses; at least one of either. Raises ``CertificateError``.
    """
    names, addresses = _subject_names(hosts, ips)
    if days < 1 or ca_days < days:
        raise CertificateError(
            f"validity of {days} days for the server and {ca_days} for the CA does not work: "
            "the server needs at least 1 day and the CA at least as many as the server"
        )
    binary = shutil.which(openssl)
    if binary is None:
        raise CertificateError(
            f"the {openssl!r} command is not installed: install Debian's openssl package "
            "(sudo apt install openssl)"
        )
    try:
        out_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    except OSError as error:
        raise CertificateError(
            f"cannot create {out_dir} ({error.strerror}): choose an --out you can write to"
        ) from error
    ca_cert, ca_key = out_dir / CA_CERT_NAME, out_dir / CA_KEY_NAME
    if ca_cert.exists() != ca_key.exists():
        present, missing = (ca_cert, ca_key) if ca_cert.exists() else (ca_key, ca_cert)
        raise CertificateError(
            f"{present} exists but {missing} does not: restore it, or move {present} away to "
            "make a new CA (every lamp must then be enrolled again)"
        )
    runner = _OpenSSL(binary)
    try:
        with tempfile.TemporaryDirectory(dir=out_dir, prefix=".certs-") as scratch:
            work = Path(scratch)
            config = work / "openssl.cnf"
            config.write_text(_config(names, addresses), encoding="ascii")
            ca_created = not ca_cert.exists()
            if ca_created:
                _new_key(runner, work / CA_KEY_NAME)
                runner.run(
                    "req", "-new", "-x509", "-config", config, "-extensions", "v3_ca",
                    "-key", work / CA_KEY_NAME, "-sha256", "-days", str(ca_days),
                    "-set_serial", _serial(),
                    "-subj", f"/O=touchlamp/CN=touchlamp private CA {secrets.token_hex(4)}",
                    "-out", work / CA_CERT_NAME,
                )  # fmt: skip
            else:
                _check_pair(runner, ca_cert, ca_key)
            signing_cert = work / CA_CERT_NAME if ca_created else ca_cert
            signing_key = work / CA_KEY_NAME if ca_created else ca_key
            _new_key(runner, work / SERVER_KEY_NAME)
            runner.run(
                "req", "-new", "-config", config, "-key", work / SERVER_KEY_NAME,
                "-subj", f"/O=touchlamp/CN={(names or addresses)[0]}", "-out", work / "server.csr",
            )  # fmt: skip
            runner.run(
                "x509", "-req", "-in", work / "server.csr", "-CA", signing_cert,
                "-CAkey", signing_key, "-set_serial", _serial(), "-days", str(days), "-sha256",
                "-extfile", config, "-extensions", "v3_server", "-out", work / SERVER_CERT_NAME,
            )  # fmt: skip
            runner.run(
                "verify", "-purpose", "sslserver", "-CAfile", signing_cert, work / SERVER_CERT_NAME
            )
            moved = [SERVER_KEY_NAME, SERVER_CERT_NAME]
            if ca_created:
                moved += [CA_KEY_NAME, CA_CERT_NAME]
            for name in moved:
                source = work / name
                # Certificates are public (Mosquitto's user and the relay read them); keys not.
                source.chmod(0o600 if name.endswith(".key") else 0o644)
                source.replace(out_dir / name)
    except OSError as error:
        raise CertificateError(
            f"cannot write the certificates into {out_dir} ({error.strerror or error}): "
            "choose an --out you can write to"
        ) from error
    today = dt.datetime.now(dt.UTC).date()
    return Certificates(
        ca_certificate=ca_cert,
        ca_key=ca_key,
        certificate=out_dir / SERVER_CERT_NAME,
        key=out_dir / SERVER_KEY_NAME,
        names=names,
        addresses=addresses,
        ca_created=ca_created,
        expires=today + dt.timedelta(days=days),
    )


def _subject_names(
    hosts: Sequence[str], ips: Sequence[str]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    names: list[str] = []
    addresses: list[str] = []
    for host in hosts:
        try:
            addresses.append(validate_ip(host))
        except ValueError:
            try:
                names.append(validate_dns_name(host))
            except ValueError as error:
                raise CertificateError(str(error)) from None
    for address in ips:
        try:
            addresses.append(validate_ip(address))
        except ValueError as error:
            raise CertificateError(str(error)) from None
    if not names and not addresses:
        raise CertificateError(
            "a certificate needs the broker's name: pass --host NAME (what the lamps dial) "
            "and/or --ip ADDRESS"
        )
    return tuple(dict.fromkeys(names)), tuple(dict.fromkeys(addresses))


def _config(names: Sequence[str], addresses: Sequence[str]) -> str:
    # Our own minimal config, so the system's openssl.cnf (absent, or with odd defaults) does
    # not matter. Every value was validated above: no line here comes from free text.
    alt = [f"DNS.{i} = {name}" for i, name in enumerate(names, 1)]
    alt += [f"IP.{i} = {address}" for i, address in enumerate(addresses, 1)]
    return "\n".join(
        [
            "[req]",
            "distinguished_name = dn",
            "prompt = no",
            "[dn]",
            "CN = touchlamp",
            "[v3_ca]",
            "basicConstraints = critical, CA:TRUE, pathlen:0",
            "keyUsage = critical, keyCertSign, cRLSign",
            "subjectKeyIdentifier = hash",
            "[v3_server]",
            "basicConstraints = critical, CA:FALSE",
            "keyUsage = critical, digitalSignature",
            "extendedKeyUsage = serverAuth",
            "subjectAltName = @alt",
            "subjectKeyIdentifier = hash",
            "authorityKeyIdentifier = keyid",
            "[alt]",
            *alt,
            "",
        ]
    )


def _serial() -> str:
    # Random 127-bit serials (positive, under 20 bytes): no serial file to keep next to the CA.
    return f"0x{secrets.randbits(127) | 1 << 120:x}"


def _new_key(runner: _OpenSSL, path: Path) -> None:
    pem = runner.run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256")
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(pem)


def _check_pair(runner: _OpenSSL, ca_cert: Path, ca_key: Path) -> None:
    try:
        from_cert = runner.run("x509", "-noout", "-pubkey", "-in", ca_cert)
        from_key = runner.run("pkey", "-pubout", "-in", ca_key)
    except CertificateError as error:
        raise CertificateError(
            f"cannot read the existing CA ({ca_cert}, {ca_key}): {error}"
        ) from None
    if from_cert.strip() != from_key.strip():
        raise CertificateError(
            f"{ca_key} is not the key of {ca_cert}: restore the matching pair, or move both "
            "away to make a new CA (every lamp must then be enrolled again)"
        )


class _OpenSSL:
    def __init__(self, binary: str) -> None:
        self._binary = binary

    def run(self, *arguments: str | Path) -> bytes:
        command = [self._binary, *(str(argument) for argument in arguments)]
        try:
            done = subprocess.run(  # noqa: S603  our own fixed arguments, validated names
                command, capture_output=True, check=False, timeout=_TIMEOUT
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise CertificateError(f"`openssl {arguments[0]}` did not run: {error}") from error
        if done.returncode != 0:
            said = done.stderr.decode("utf-8", "replace").strip().splitlines()
            raise CertificateError(
                f"`openssl {arguments[0]}` failed (exit {done.returncode}): "
                + ("; ".join(said[-3:]) or "no message")
            )
        return done.stdout
