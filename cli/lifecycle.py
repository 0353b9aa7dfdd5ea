"""``with`` for the parts that run or hold something: ``StopsOnExit`` and ``ClosesOnExit``.

As gpiozero's devices close in ``__exit__`` (``with LED(16) as led:``), the relay, the lamp
agent, the link, the web server and the store are context managers: a block that starts one
stops it (or closes it) however the block ends, so a caller need not write its own
``try``/``finally``. The classes keep ``start``/``stop`` and ``close`` for callers whose parts
live longer than one block (ARCHITECTURE.md, "One error base, one way to write a file, …").

    with Relay(settings=settings, store=store) as relay:
        ...                        # started; stopped when the block ends, even on an error
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Self

__all__ = ["ClosesOnExit", "StopsOnExit"]


class StopsOnExit:
    """A mixin: entering the ``with`` block calls ``start()``, leaving it calls ``stop()``.

    ``stop`` is called with no arguments (each class's default timeout), also when ``start``
    fails half-way (a signal during start-up, a port taken), so what it started is let go; the
    error still propagates.
    """

    @abstractmethod
    def start(self) -> object:
        """Start the part (its return value, e.g. the web server's address, is not needed)."""

    @abstractmethod
    def stop(self) -> None:
        """Stop the part; also called on one whose ``start`` failed or that has stopped."""

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_exception: object) -> None:
        self.stop()


class ClosesOnExit:
    """A mixin: the ``with`` block hands out the (already open) object and ``close()``s it."""

    @abstractmethod
    def close(self) -> None:
        """Release what the object holds (a database connection, a file)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exception: object) -> None:
        self.close()
