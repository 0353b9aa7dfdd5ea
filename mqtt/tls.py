"""TLS to the broker: one context (certificate *and* host name checked), and why a broker's
certificate was refused, in words that point at the fix (SECURITY.md)."""

from __future__ import annotations

import ssl
from pathlib import Path

from touchlamp.errors import ConfigurationError

__all__ = ["CAFileError", "tls_context", "why_untrusted"]


class CAFileError(ConfigurationError, ValueError):
    """The CA file named in the settings cannot be loaded (exit 2: fix the setting)."""


def tls_context(
    ca_file: Path | None,
    *,
    setting: str,
    whose: str = "the broker's",
    error: type[Exception] = CAFileError,
) -> ssl.SSLContext:
    """Certificate *and* host name checked; ``ca_file`` for a private CA, else the system's.

    Raises: ``error`` (``CAFileError`` unless the caller names its own) when ``ca_file`` cannot
    be loaded; the message names ``setting``, the variable that points at it.
    """
    try:
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file is not None else None)
    except (OSError, ssl.SSLError) as failure:
        raise error(
            f"cannot load the CA file {ca_file} ({failure}): point {setting} at the PEM "
            f"certificate of the CA that signed {whose} certificate"
        ) from failure
    context.sslsocket_class = _ClosingSSLSocket
    return context


# OpenSSL's X509_V_ERR_* codes (SSLCertVerificationError.verify_code) a lamp owner can act on.
_NAME_MISMATCH = frozenset({62, 64})  # hostname, IP address
_UNTRUSTED_ISSUER = frozenset({2, 18, 19, 20, 21})  # no issuer / self-signed / unknown CA
_NOT_YET_VALID, _EXPIRED = 9, 10


def why_untrusted(
    error: ssl.SSLCertVerificationError,
    *,
    host: str,
    ca_file: Path | None,
    ca_setting: str = "TOUCHLAMP_DEVICE_MQTT__CA_FILE",
) -> str:
    """Why the broker's certificate was refused, in words that point at the fix (one line)."""
    code = error.verify_code
    detail = f"certificate verify failed: {error.verify_message}"
    if code in _NAME_MISMATCH:
        return (
            f"its TLS certificate is not valid for {host!r}, the name this lamp dials; enroll "
            "with a name the certificate lists, or re-issue it with `touchlamp broker certs`, "
            f"adding --host {host} ({detail})"
        )
    if code in _UNTRUSTED_ISSUER:
        trusted = f"the CA in {ca_file}" if ca_file is not None else "a CA this system trusts"
        return (
            f"its TLS certificate is not signed by {trusted} (wrong CA): enroll the lamp with a "
            f"new token from this broker's relay, or set {ca_setting} to the CA "
            f"that signed it ({detail})"
        )
    if code in {_NOT_YET_VALID, _EXPIRED}:
        return (
            "its TLS certificate is outside its validity dates: check this lamp's clock "
            f"(timedatectl), or renew it with `touchlamp broker certs` ({detail})"
        )
    return f"its TLS certificate was refused ({detail})"


class _ClosingSSLSocket(ssl.SSLSocket):
    """Closes itself when the TLS handshake fails.

    paho 2.2 leaves the socket of a failed handshake (a wrong certificate) open for the garbage
    collector, one per reconnect attempt; ``SSLContext.sslsocket_class`` is the documented hook.
    """

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except OSError:
            self.close()
            raise
