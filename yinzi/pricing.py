"""What an order costs: points per started minute of media, per order type, times the priority's multiplier.

One function, used to refuse an order the balance cannot start (one minute), to quote a price
(order/calculate) and to set the cost of a finished order, so the three always agree.
"""

from __future__ import annotations

import math

from yinzi.settings import Settings

PRIORITIES = ("queue", "lightning")


def billed_minutes(duration: float) -> int:
    """Every started minute counts; anything at all is at least one."""
    return max(1, math.ceil(duration / 60))


def order_cost(settings: Settings, order_type: str, duration: float, priority: str = "queue") -> int:
    multiplier = settings.lightning_multiplier if priority == "lightning" else 1.0
    return math.ceil(settings.prices[order_type] * multiplier * billed_minutes(duration))
