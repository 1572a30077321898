"""The native 音子 open-platform API as one declared surface: its tag, envelope, errors, auth and messages.

Every native endpoint (the modules beside this one) is declared once on ``endpoints``; the models there are the
validation, the OpenAPI schema and the handler's argument. Answers are the envelope ``{code, data, msg}``:
``code`` 0 and ``msg`` "success" with the data, or on errors ``code`` equal to the HTTP status and ``data`` null.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Generic, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from yinzi.accounts import authenticate
from yinzi.declare import Api, Endpoints, checked_elsewhere, validation_message
from yinzi.envelope import error
from yinzi.errors import YinziError
from yinzi.middleware import REQUEST_ID_HEADER

Data = TypeVar("Data")
# What yinzi.links.find_links takes for a link in a text: a scheme, then at least one character of a host.
LINK_IN_TEXT = r"[Hh][Tt][Tt][Pp][Ss]?://[^\s<>\"'/?#]"


class Envelope(BaseModel, Generic[Data]):
    """A successful answer."""

    code: Literal[0]
    data: Data
    msg: Literal["success"]


class Error(BaseModel):
    """An error: ``code`` is the HTTP status, ``data`` is null and ``msg`` says what to change."""

    code: int = Field(ge=400, le=599)
    data: None
    msg: str = Field(min_length=1)


class Strict(BaseModel):
    """A request shape: JSON types as sent (no "10" for 10), unknown fields refused. ``field_messages`` gives,
    per field path, the one message for any problem with that field that no validator worded itself."""

    model_config = ConfigDict(strict=True, extra="forbid")
    field_messages: ClassVar[Mapping[str, str]] = {}


class Query(BaseModel):
    """Query parameters: strings, and other parameters (``apiKey``) left to whoever reads them."""

    model_config = ConfigDict(extra="ignore")
    field_messages: ClassVar[Mapping[str, str]] = {}


def optional(description: str = "", **constraints: Any) -> Any:
    """A field that may be left out, and is then absent rather than null (null is refused where it matters)."""
    extra = {"description": description} if description else {}
    return Field(default=None, json_schema_extra=checked_elsewhere(**extra), **constraints)


def native_message(exc: ValidationError, model: type[BaseModel]) -> str:
    """Worded as the native API always has: an unknown field first, naming what is allowed; then a field's own
    message; then the generic wording."""
    errors = exc.errors(include_url=False)
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    where = ".".join(str(part) for part in first["loc"])
    if first["type"] == "extra_forbidden":
        return f"unknown field: {where} (allowed: {', '.join(_allowed(model, first['loc'][:-1]))})"
    if first["type"] not in ("value_error", "assertion_error"):
        worded: Mapping[str, str] = getattr(model, "field_messages", {})
        if where in worded:
            return worded[where]
    return validation_message(exc, model)


def _allowed(model: type[BaseModel], path: tuple[int | str, ...]) -> list[str]:
    for part in path:
        annotation = model.model_fields[str(part)].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return sorted(field.alias or name for name, field in model.model_fields.items())


def _error(exc: YinziError, request_id: str) -> web.Response:
    return error(exc.status, exc.msg)


SIGNED_HEADERS = ("X-Public-Key", "X-Timestamp", "X-Signature")

API = Api(
    name="yinzi",
    title="音子 open platform API",
    description=(
        "Audio processing orders (stem separation, transcription) billed in points, resumable uploads and "
        "short-video links. Every answer is the envelope {code, data, msg}; on errors code equals the HTTP "
        "status and data is null. Keys: Authorization: Bearer <key>, ?apiKey=<key>, or a signed pair "
        "(X-Public-Key, X-Timestamp in Unix seconds, X-Signature)."
    ),
    error=_error,
    error_model=Error,
    request_id_header=REQUEST_ID_HEADER,
    security={
        "bearer": {"type": "http", "scheme": "bearer", "description": "an API key: yz_..."},
        "apiKey": {
            "type": "apiKey",
            "in": "query",
            "name": "apiKey",
            "description": "the same key, in the URL",
        },
        "publicKey": {"type": "apiKey", "in": "header", "name": "X-Public-Key", "description": "yzpk_..."},
        "timestamp": {
            "type": "apiKey",
            "in": "header",
            "name": "X-Timestamp",
            "description": "Unix seconds, within 5 minutes of the server's clock",
        },
        "signature": {
            "type": "apiKey",
            "in": "header",
            "name": "X-Signature",
            "description": "hex HMAC-SHA256 of the timestamp with the pair's secret (see README)",
        },
    },
    security_requirements=(("bearer",), ("apiKey",), ("publicKey", "timestamp", "signature")),
    authenticate=authenticate,
    message=native_message,
)

endpoints = Endpoints(API)


class SignedUrl(Query):
    """The query of a URL the service signed (result files, upload URLs): no key needed, but a missing, wrong
    or expired signature is refused with 403."""

    model_config = ConfigDict(json_schema_extra={"required": ["expires", "sig"]})

    # Read as given (a missing one reads as empty), so that the signer, not validation, refuses it: 403.
    expires: str = Field(
        default="", json_schema_extra=checked_elsewhere(pattern=r"^[0-9]+$", description="Unix seconds")
    )
    sig: str = Field(default="", json_schema_extra=checked_elsewhere(pattern=r"^[0-9a-f]{64}$"))
