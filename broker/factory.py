"""``open_broker(url, options)``: the ``Broker`` implementation that fits the URL's topology."""

from __future__ import annotations

from broker.broker import RedisBroker
from broker.facade import Broker, BrokerOptions


def open_broker(url: str, options: BrokerOptions) -> Broker:
    """``memory://`` (embedded) and ``redis://``/``rediss://`` (one server) today; Sentinel and Cluster next."""
    return RedisBroker.from_url(url, options)
