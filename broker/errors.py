"""Errors the broker raises. ``redis`` exceptions are converted here and nowhere else."""

from __future__ import annotations


class BrokerError(Exception):
    """Root of the broker's errors."""


class Unavailable(BrokerError):
    """Redis cannot be reached (or refused the command): the operation did not happen."""


class OutcomeUnknown(Unavailable):
    """Redis stopped answering after a publish was sent: it may or may not have happened.

    Retrying with the same idempotency key is safe; without one it may duplicate the event.
    """


class Duplicate(BrokerError):
    """The thing being stored already exists (a book with that ISBN); nothing was published."""
