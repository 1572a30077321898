"""The response envelope every endpoint speaks, and strict JSON request bodies."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from yinzi.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

# What curl -d sends when no Content-Type is given.
FORM_TYPE = "application/x-www-form-urlencoded"


def ok(data: Any) -> web.Response:
    return web.json_response({"code": 0, "data": data, "msg": "success"})


def error(status: int, msg: str) -> web.Response:
    return web.json_response({"code": status, "data": None, "msg": msg}, status=status)


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object. Size is capped by the app's client_max_size (413 past it)."""
    # aiohttp reports a missing Content-Type as application/octet-stream; such bodies are parsed as JSON. So is
    # curl's default for -d (a form type): a body that is a JSON object is unambiguous, whatever its label.
    content_type = request.content_type
    labelled_form = content_type == FORM_TYPE
    if not (
        content_type in ("application/json", "application/octet-stream")
        or content_type.endswith("+json")
        or labelled_form
    ):
        raise UnsupportedMediaType(f"Content-Type must be application/json, not {content_type}")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        # As the API's own error (yinzi/declare.py answers it in each API's shape), not aiohttp's exception.
        raise PayloadTooLarge("request body too large") from None
    if labelled_form and not raw.lstrip().startswith(b"{"):
        raise UnsupportedMediaType(f"Content-Type must be application/json, not a {FORM_TYPE} form")
    if not raw.strip():
        raise BadRequest("request body is empty: send a JSON object")
    try:
        body = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadRequest("request body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise BadRequest(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(body, dict):
        raise BadRequest(f"request body must be a JSON object, not {type(body).__name__}")
    return body


def reject_unknown(fields: dict[str, Any], known: frozenset[str], where: str = "") -> None:
    """400 naming the first field the endpoint does not take, so a typo is not silently ignored."""
    unknown = sorted(set(fields) - known)
    if unknown:
        raise BadRequest(f"unknown field: {where}{unknown[0]} (allowed: {', '.join(sorted(known))})")
