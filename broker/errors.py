"""Errors the broker raises. ``redis`` exceptions are converted here and nowhere else."""

from __future__ import annotations


class BrokerError(Exception):
    """Root of the broker's errors."""


class Unavailable(BrokerError):
    """Redis cannot be reached: nothing was published or read."""


class Duplicate(BrokerError):
    """The thing being stored already exists (a book with that ISBN); nothing was published."""
