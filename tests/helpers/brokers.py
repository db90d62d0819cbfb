"""Brokers as ``herald serve`` makes them (``open_broker``), for the broker tests of every topology."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from broker import Broker, BrokerOptions, open_broker


@asynccontextmanager
async def brokers_on(url: str, prefix: str) -> AsyncIterator[Callable[..., Awaitable[Broker]]]:
    """``make(**options)``: a started broker on ``url`` (``replica-1``, ``replica-2``, ...; keys under ``prefix``
    unless ``options`` say otherwise; each ``memory://`` one is its own embedded Redis); all closed on exit."""
    brokers: list[Broker] = []

    async def make(**options: Any) -> Broker:
        options.setdefault("replica_id", f"replica-{len(brokers) + 1}")
        options.setdefault("prefix", prefix)
        broker = open_broker(url, BrokerOptions(**options))
        brokers.append(broker)
        await broker.start()
        return broker

    try:
        yield make
    finally:
        for broker in brokers:
            await broker.close()
