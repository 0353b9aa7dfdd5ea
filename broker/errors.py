"""The one error base of the broker area; each subclass says what failed and how to fix it."""

from __future__ import annotations

from touchlamp.errors import TouchlampError

__all__ = ["BrokerAdminError", "BrokerError", "BrokerStartError", "BrokerStateError"]


class BrokerError(TouchlampError, RuntimeError):
    """Something about the broker (starting it, its state dir, administering it) went wrong."""


class BrokerStartError(BrokerError):
    """Mosquitto did not start or stopped unexpectedly; the message ends with its log's tail."""


class BrokerStateError(BrokerError):
    """The state dir cannot be used as it is (missing credentials, wrong owner, other root)."""


class BrokerAdminError(BrokerError):
    """The broker refused or did not answer an administrative request (dynamic security)."""
