"""Orders as the public API sees them: validating a create request and shaping a query answer.

Plain functions over plain data: no aiohttp, no SQL, so the rules are easy to read and test.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from yinzi.db import Order
from yinzi.errors import BadRequest
from yinzi.fetch import AddressPolicy, BlockedAddress
from yinzi.settings import ORDER_TYPES

ORDER_NO_ALPHABET = string.ascii_letters + string.digits
ORDER_NO_LENGTH = 18  # 107 random bits: unguessable
MAX_URL_LENGTH = 4096

CREATE_FIELDS = frozenset({"orderType", "stuff"})
STUFF_FIELDS = frozenset({"pathKey"})


@dataclass(frozen=True)
class OrderRequest:
    order_type: str
    stuff: dict[str, Any]


def new_order_no() -> str:
    # One draw of 107 random bits in base 62 (62^18 > 2^107), padded to the fixed length.
    n = secrets.randbits(107)
    digits = []
    for _ in range(ORDER_NO_LENGTH):
        n, digit = divmod(n, 62)
        digits.append(ORDER_NO_ALPHABET[digit])
    return "".join(digits)


def _reject_unknown(fields: dict[str, Any], known: frozenset[str], where: str) -> None:
    unknown = sorted(set(fields) - known)
    if unknown:
        raise BadRequest(f"unknown field: {where}{unknown[0]} (allowed: {', '.join(sorted(known))})")


def parse_create(body: dict[str, Any], policy: AddressPolicy) -> OrderRequest:
    _reject_unknown(body, CREATE_FIELDS, "")
    order_type = body.get("orderType")
    if order_type is None:
        raise BadRequest("orderType is required")
    if not isinstance(order_type, str):
        raise BadRequest("orderType must be a string")
    if order_type not in ORDER_TYPES:
        raise BadRequest(f"orderType must be one of: {', '.join(ORDER_TYPES)}")
    stuff = body.get("stuff")
    if stuff is None:
        raise BadRequest("pathKey is required")
    if not isinstance(stuff, dict):
        raise BadRequest("stuff must be an object")
    _reject_unknown(stuff, STUFF_FIELDS, "stuff.")
    path_key = stuff.get("pathKey")
    if path_key is None or path_key == "":
        raise BadRequest("pathKey is required")
    if not isinstance(path_key, str):
        raise BadRequest("stuff.pathKey must be a string")
    if len(path_key) > MAX_URL_LENGTH:
        raise BadRequest(f"stuff.pathKey is longer than {MAX_URL_LENGTH} characters")
    try:
        policy.check_url(path_key.strip())
    except BlockedAddress as exc:
        raise BadRequest(f"stuff.pathKey: {exc}") from None
    except ValueError:
        raise BadRequest("stuff.pathKey must be an http or https URL") from None
    return OrderRequest(order_type=order_type, stuff={**stuff, "pathKey": path_key.strip()})


def created_view(order_no: str, order_type: str) -> dict[str, Any]:
    return {
        "orderNo": order_no,
        "orderType": order_type,
        "orderStatus": "pending",
        "payStatus": "waiting",
        "messageId": order_no,  # the queue's job id is the order number
    }


def query_view(order: Order, balance: int, file_url: Callable[[str], str]) -> dict[str, Any]:
    """The seed's fields plus payStatus and progress. Files are listed only once the order is paid."""
    paid = order.status == "finish" and order.pay_status == "paid"
    return {
        "orderNo": order.order_no,
        "orderType": order.order_type,
        "status": order.status,
        "payStatus": order.pay_status,
        "progress": order.progress,
        "cost": order.cost if order.status == "finish" else 0,
        "reason": order.reason,
        "stuffs": [{"name": r.name, "business": r.business, "url": file_url(r.name)} for r in order.results]
        if paid
        else [],
        "balance": balance,
    }
