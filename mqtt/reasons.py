"""What an MQTT 5 reason code from the broker means for us: one rule, by code, for lamps and relay.

A CONNACK answers a lamp's (or the relay's) connection; a PUBACK answers a touch (lamp) or a
glow (relay). Each code the MQTT 5 standard allows there (§3.2.2.2, §3.4.2.1) has an entry here
with a ``Verdict`` and *why*; callers match on the verdict, never on paho's reason strings
(whose wording is paho's and has changed between releases). A code the table does not know is
judged by its class: below 0x80 a success, from 0x80 a failure worth retrying (a broker may add
codes; giving up for good on one we have never seen would strand a lamp).

``STOP`` is kept for what retrying cannot fix without a person changing this client's
credentials or configuration, or the broker's: hammering the broker meanwhile only fills its
log. Everything else a broker can get over by itself (busy, restarting, a quota) is ``RETRY``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "CONNACK",
    "NO_MATCHING_SUBSCRIBERS",
    "PUBACK",
    "Reason",
    "Verdict",
    "connack",
    "puback",
]


class Verdict(enum.Enum):
    DONE = "done"
    """Success: nothing more to do."""
    NO_SUBSCRIBERS = "no-subscribers"
    """Accepted, but nobody was subscribed, so it went nowhere: keep it and send it again once
    the receiver is back (it is not the broker's fault, nor the sender's)."""
    RETRY = "retry"
    """Refused for now: try again later, with backoff."""
    STOP = "stop"
    """Refused for good: stop, say what to fix (``Reason.fix``); trying again changes nothing."""


@dataclass(frozen=True, slots=True)
class Reason:
    code: int
    name: str  # the standard's name
    verdict: Verdict
    why: str  # why this verdict
    fix: str = ""  # for STOP: what a person must change

    def __str__(self) -> str:
        return f"{self.name} (0x{self.code:02X})"


NO_MATCHING_SUBSCRIBERS = 0x10

_CREDENTIALS_FIX = "re-enroll the lamp or fix the login's password on the broker"
_CONFIG_FIX = "fix the client's configuration or the broker's"

_CONNACK_REASONS = (
    Reason(0x00, "Success", Verdict.DONE, "connected"),
    Reason(0x80, "Unspecified error", Verdict.RETRY, "the broker's own trouble; it may pass"),
    Reason(
        0x81,
        "Malformed Packet",
        Verdict.RETRY,
        "a corrupted CONNECT on the way (a bad link or middlebox); the next one may arrive whole",
    ),
    Reason(0x82, "Protocol Error", Verdict.RETRY, "as 0x81: nothing in our CONNECT varies"),
    Reason(
        0x83, "Implementation specific error", Verdict.RETRY, "a broker plugin's trouble; may pass"
    ),
    Reason(
        0x84,
        "Unsupported Protocol Version",
        Verdict.STOP,
        "the broker does not speak MQTT 5; every attempt gets the same answer",
        "point the client at an MQTT 5 broker (Mosquitto 1.6 or newer)",
    ),
    Reason(
        0x85,
        "Client Identifier not valid",
        Verdict.STOP,
        "the client id is the lamp's id (or the relay's configured one), the same every time",
        "check the client id the broker's configuration allows",
    ),
    Reason(
        0x86,
        "Bad User Name or Password",
        Verdict.STOP,
        "the password is fixed at enrollment; retrying with it only fills the broker's log",
        _CREDENTIALS_FIX,
    ),
    Reason(
        0x87,
        "Not authorized",
        Verdict.STOP,
        "the login exists but may not connect (disabled, or a wrong password on Mosquitto's "
        "dynamic security)",
        _CREDENTIALS_FIX,
    ),
    Reason(0x88, "Server unavailable", Verdict.RETRY, "the broker says so itself: for now"),
    Reason(0x89, "Server busy", Verdict.RETRY, "for now; the backoff spreads the retries"),
    Reason(
        0x8A,
        "Banned",
        Verdict.STOP,
        "an administrator's decision; retrying looks like what got the client banned",
        "ask the broker's administrator to lift the ban",
    ),
    Reason(
        0x8C,
        "Bad authentication method",
        Verdict.STOP,
        "the broker does not support the authentication method we send; we always send the same",
        _CONFIG_FIX,
    ),
    Reason(
        0x90,
        "Topic Name invalid",
        Verdict.STOP,
        "the will's topic comes from the configured topic root, the same every time",
        "check the topic root (TOUCHLAMP_…_MQTT__TOPIC_ROOT)",
    ),
    Reason(
        0x95,
        "Packet too large",
        Verdict.STOP,
        "our CONNECT is the same size every time",
        _CONFIG_FIX,
    ),
    Reason(0x97, "Quota exceeded", Verdict.RETRY, "a quota frees up with time"),
    Reason(
        0x99,
        "Payload format invalid",
        Verdict.STOP,
        "the will's payload is the same every time",
        _CONFIG_FIX,
    ),
    Reason(
        0x9A,
        "Retain not supported",
        Verdict.STOP,
        "the will is retained (availability, PROTOCOL.md); the broker must support retain",
        "enable retained messages on the broker (retain_available true)",
    ),
    Reason(
        0x9B,
        "QoS not supported",
        Verdict.STOP,
        "everything we send is QoS 1; the broker must support it",
        "allow QoS 1 on the broker (max_qos 1 or more)",
    ),
    Reason(
        0x9C,
        "Use another server",
        Verdict.RETRY,
        "meant for now (maintenance); we do not follow redirects, so we wait for it to end",
    ),
    Reason(
        0x9D,
        "Server moved",
        Verdict.STOP,
        "meant for good: every attempt at this address gets the same answer",
        "point the client at the broker's new address",
    ),
    Reason(0x9F, "Connection rate exceeded", Verdict.RETRY, "the backoff slows us down for it"),
)

_PUBACK_REASONS = (
    Reason(0x00, "Success", Verdict.DONE, "the broker has it and has passed it on"),
    Reason(
        0x10,
        "No matching subscribers",
        Verdict.NO_SUBSCRIBERS,
        "accepted and dropped: nobody was subscribed. A broker that restarted lost the "
        "relay's shared subscription or a lamp's session (tests/faults, RELIABILITY.md); "
        "that receiver subscribes again when it comes back",
    ),
    Reason(0x80, "Unspecified error", Verdict.RETRY, "the broker's own trouble; it may pass"),
    Reason(
        0x83, "Implementation specific error", Verdict.RETRY, "a broker plugin's trouble; may pass"
    ),
    Reason(
        0x87,
        "Not authorized",
        Verdict.STOP,
        "the ACL does not let this login publish on the topic; the same message is refused "
        "every time (and would fill the outbox)",
        "check the broker's ACL for this login and topic",
    ),
    Reason(
        0x90,
        "Topic Name invalid",
        Verdict.STOP,
        "the topic comes from the configured root and the lamp id, the same every time",
        "check the topic root (TOUCHLAMP_…_MQTT__TOPIC_ROOT)",
    ),
    Reason(
        0x91,
        "Packet identifier in use",
        Verdict.RETRY,
        "client and broker disagree on a packet id; a new connection starts afresh",
    ),
    Reason(0x97, "Quota exceeded", Verdict.RETRY, "a quota frees up with time"),
    Reason(
        0x99,
        "Payload format invalid",
        Verdict.STOP,
        "the payload is the same every time",
        "report it: a message the broker cannot take is a bug in touchlamp",
    ),
)

CONNACK: dict[int, Reason] = {reason.code: reason for reason in _CONNACK_REASONS}
"""Every CONNACK reason code of MQTT 5, by value."""
PUBACK: dict[int, Reason] = {reason.code: reason for reason in _PUBACK_REASONS}
"""Every PUBACK reason code of MQTT 5, by value."""


def connack(code: int) -> Reason:
    """What the CONNACK reason ``code`` means (an unknown code by its class)."""
    return CONNACK.get(code) or _unknown(code)


def puback(code: int) -> Reason:
    """What the PUBACK reason ``code`` means (an unknown code by its class)."""
    return PUBACK.get(code) or _unknown(code)


def _unknown(code: int) -> Reason:
    if code < 0x80:
        return Reason(code, "unknown success", Verdict.DONE, "below 0x80: a success (MQTT 5 §2.4)")
    return Reason(
        code,
        "unknown error",
        Verdict.RETRY,
        "a code this table does not know: giving up for good on it could strand a lamp",
    )
