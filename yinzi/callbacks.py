"""How an order's callback is written, per API.

The native API's callback body is written by the database when the order ends (yinzi/store/schema.py). An
order made through another API (``orders.api``) is called back in that API's own shape: its module registers a
:class:`CallbackStyle` here when it is imported, and the sweeper (workers/sweeper.py) renders each delivery with
the style of the order's API just before sending it. Whoever wires a process that sweeps (the app, ``yinzi
worker``) imports the APIs, so their styles are registered wherever callbacks go out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from yinzi.service import OrderService
from yinzi.store import Order


@dataclass(frozen=True)
class Outgoing:
    body: bytes
    headers: dict[str, str]
    # Seconds before each retry after a non-2xx answer; None: the service's (webhook_retry_delays).
    retry_delays: tuple[float, ...] | None = None


class CallbackStyle(Protocol):
    async def render(self, service: OrderService, order: Order, secret: str) -> Outgoing:
        """The request to send for an ended order. ``secret`` is the owner's webhook secret. A style whose
        body carries the results delivers the order (``service.deliver``), which charges it once."""
        ...


STYLES: dict[str, CallbackStyle] = {}


def register(api: str, style: CallbackStyle) -> None:
    STYLES[api] = style
