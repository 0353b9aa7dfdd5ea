"""A short MQTT session of the doctor's own: log in as a lamp, a relay or the admin without
disturbing the service's session, and ask the relay one question (mqtt/session.py)."""

from __future__ import annotations

import contextlib
import secrets
import ssl
from collections.abc import Iterator

from touchlamp.mqtt.client import new_client
from touchlamp.mqtt.session import NoAnswerError, Session

__all__ = ["NoAnswerError", "Session", "open_session"]


@contextlib.contextmanager
def open_session(
    *,
    host: str,
    port: int,
    username: str,
    password: str,
    context: ssl.SSLContext | None,
    timeout: float,
    client_id: str | None = None,
    session_expiry: int = 0,
) -> Iterator[Session]:
    """A short MQTT 5 connection of doctor's own; ``Session.refused`` says why it failed.

    Without ``client_id`` it is a clean, non-persistent session under a random client id, so
    nothing of the service's is touched. With ``client_id`` (a service's id, which the broker may
    bind to its user) it resumes that service's persistent session instead of replacing it —
    ``clean_start=False``, the service's own session expiry — and acknowledges nothing but its
    own answer, so the messages queued for the service stay queued for it (the broker sends
    unacknowledged messages again when the service reconnects). Use it only when the service
    is not running: a second connection with its client id would take over its session.
    """
    client = new_client(
        client_id or f"{username}-doctor-{secrets.token_hex(3)}",
        username=username,
        password=password,
        tls=context,
        log_as=f"{__name__}.paho",
        manual_ack=True,
    )
    with Session.open(
        client,
        host=host,
        port=port,
        timeout=timeout,
        session_expiry=session_expiry if client_id is not None else None,
    ) as session:
        yield session
