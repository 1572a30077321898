"""Endpoints declared once: the route, the request and response shapes, the errors and the docs.

Every API yinzi speaks (the native one in yinzi/routes, the others in yinzi/dialects) declares its endpoints
through an :class:`Endpoints` table bound to its :class:`Api`:

    api = Api(name="orpheus", title="Orpheus async API", error=orpheus_error, ...)
    endpoints = Endpoints(api)

    @endpoints.post("/v1/audio/jobs", summary="Start a job", body=JobRequest, response=Job, errors=(400, 402))
    async def create_job(request: web.Request, job: JobRequest) -> web.Response: ...

The pydantic model given as ``body`` (JSON), ``query`` or ``form`` (multipart, read by :func:`read_form`) is at
once the validation (the handler receives the validated value), the OpenAPI schema and the handler's type. A
:class:`~yinzi.errors.YinziError` raised in the handler, or a validation failure, is answered in the API's own
error shape with its request id header; :func:`openapi_document` builds ``/openapi.json`` from the tables, one
tag per API.

An :class:`Api` may also authenticate before the request is read (so a caller without a key hears 401 first)
and word validation failures its own way (``message``). Where an API's rules live in a function shared with
other APIs, ``validated=False`` lets the model document the body while the handler checks it with those rules.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import BadHttpMessage
from pydantic import BaseModel, ValidationError

from yinzi.envelope import read_json_object
from yinzi.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType, YinziError

log = logging.getLogger(__name__)

# Set on every request by the middleware: its id, and the address it came from (yinzi.middleware.client_address).
REQUEST_ID = web.RequestKey("request_id", str)
CLIENT = web.RequestKey("client", str)
Model = TypeVar("Model", bound=BaseModel)
Handler = Callable[..., Awaitable[web.StreamResponse]]
ErrorWriter = Callable[[YinziError, str], web.Response]  # (error, request id) -> the API's error response
# (the failure, the model that was validated) -> the one message a person reads
MessageWriter = Callable[[ValidationError, type[BaseModel]], str]
Authenticator = Callable[[web.Request], Awaitable[object]]
_PATH_PARAM = re.compile(r"{(\w+)(?::[^}]*)?}")
_SCHEMA_NAME = re.compile(r"[^a-zA-Z0-9.\-_]")  # what OpenAPI allows in a component's name
FORM_CHUNK = 256 * 1024


@dataclass(frozen=True)
class Api:
    """One API surface: its tag in /openapi.json, its error shape, its request id header and its auth."""

    name: str
    title: str
    description: str
    error: ErrorWriter
    error_model: type[BaseModel]
    request_id_header: str | None = None  # the API's own header carrying the request id, beside X-Request-Id
    security: Mapping[str, dict[str, Any]] = field(default_factory=dict)  # OpenAPI security schemes
    # Which schemes go together: each entry is one way in (all its schemes at once); empty: each scheme alone.
    security_requirements: tuple[tuple[str, ...], ...] = ()
    # Run before the request is read on secured endpoints, so a caller without a key hears 401 (and is counted
    # against its rate limit) before its body is judged. Raises the API's errors; what it returns is ignored.
    authenticate: Authenticator | None = None
    # How a validation failure is worded; the default is :func:`validation_message`.
    message: MessageWriter | None = None

    def link(self, operation: str, parameters: dict[str, str], body: Any = None) -> dict[str, Any]:
        """An OpenAPI link to another of this API's operations (named by its handler), its parameters (and
        body) taken from this answer: ``api.link("get_job", {"id": "$response.body#/id"})``."""
        declared: dict[str, Any] = {"operationId": f"{self.name}_{operation}", "parameters": parameters}
        if body is not None:
            declared["requestBody"] = body
        return declared

    def error_response(self, exc: YinziError, request_id: str) -> web.Response:
        response = self.error(exc, request_id)
        response.headers.update(exc.headers)
        return response

    def validate(self, model: type[Model], data: Any) -> Model:
        return validate(model, data, self.message)

    def requirements(self) -> list[dict[str, list[str]]]:
        ways = self.security_requirements or tuple((name,) for name in self.security)
        return [{name: [] for name in way} for way in ways]


@dataclass(frozen=True)
class Endpoint:
    api: Api
    method: str
    path: str
    handler: Handler
    summary: str
    description: str
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    form: type[BaseModel] | None
    response: type[BaseModel] | None
    status: int
    media_types: tuple[str, ...]  # what the success answer may be, when not just the response model's JSON
    errors: tuple[int, ...]
    error_notes: Mapping[int, str]  # what a status means on this endpoint, where more than the usual
    secured: bool
    links: Mapping[str, dict[str, Any]]
    validated: bool  # False: ``body`` only documents; the handler gets the JSON object and checks it itself
    body_required: bool
    stream: str | None  # a raw request body of this media type, read by the handler as it arrives
    headers: type[BaseModel] | None  # request headers the handler reads, documented as header parameters


class Endpoints:
    """One API's endpoints: ``routes`` for aiohttp, ``declared`` for the OpenAPI document."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.routes = web.RouteTableDef()
        self.declared: list[Endpoint] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        description: str = "",
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        form: type[BaseModel] | None = None,
        response: type[BaseModel] | None = None,
        status: int = 200,
        media_types: tuple[str, ...] = (),
        errors: Iterable[int] | Mapping[int, str] = (),
        secured: bool = True,
        links: Mapping[str, dict[str, Any]] | None = None,
        validated: bool = True,
        body_required: bool = True,
        stream: str | None = None,
        headers: type[BaseModel] | None = None,
    ) -> Callable[[Handler], Handler]:
        """``validated=False``: the body model describes the body in the document, and the handler receives the
        JSON object to check with rules kept elsewhere (say, shared with other APIs); the model must then say
        what those rules enforce. ``body_required=False``: no body at all reads as ``{}``. ``errors`` may map
        each status to what it means on this endpoint."""

        def declare(handler: Handler) -> Handler:
            endpoint = Endpoint(
                self.api, method, path, handler, summary, description or (handler.__doc__ or "").strip(),
                body, query, form, response, status, media_types,
                tuple(sorted({*errors, *((401, 429) if secured else ()), 500})),
                dict(errors) if isinstance(errors, Mapping) else {}, secured, links or {},
                validated, body_required, stream, headers,
            )  # fmt: skip
            self.declared.append(endpoint)
            # GET answers HEAD too, as aiohttp's own route tables do (load balancers and monitors send it).
            register = self.routes.get(path) if method == "GET" else self.routes.route(method, path)
            register(_wrap(endpoint))
            return handler

        return declare

    def get(self, path: str, **kwargs: Any) -> Callable[[Handler], Handler]:
        return self.route("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Callable[[Handler], Handler]:
        return self.route("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Callable[[Handler], Handler]:
        return self.route("PUT", path, **kwargs)


def _wrap(endpoint: Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    api = endpoint.api

    async def handle(request: web.Request) -> web.StreamResponse:
        request_id: str = request[REQUEST_ID]
        try:
            if endpoint.secured and api.authenticate is not None:
                await api.authenticate(request)
            args: list[Any] = []
            if endpoint.body is not None:
                raw = (
                    await read_json_object(request) if endpoint.body_required or request.can_read_body else {}
                )
                args.append(api.validate(endpoint.body, raw) if endpoint.validated else raw)
            elif endpoint.query is not None:
                args.append(api.validate(endpoint.query, dict(request.query)))
            response = await endpoint.handler(request, *args)
        except YinziError as exc:
            response = api.error_response(exc, request_id)
        except web.HTTPException:
            raise
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.path)
            response = api.error_response(
                YinziError(f"internal server error (request id {request_id})"), request_id
            )
        if api.request_id_header:
            response.headers[api.request_id_header] = request_id
        return response

    handle.__name__ = endpoint.handler.__name__
    return handle


def validate(model: type[Model], data: Any, message: MessageWriter | None = None) -> Model:
    """``data`` as ``model``; the first problem becomes a 400 a person can act on."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BadRequest((message or validation_message)(exc, model)) from None


def validation_message(exc: ValidationError, model: type[BaseModel] | None = None) -> str:
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"])
    kind = first["type"]
    if kind == "missing":
        return f"{where} is required"
    if kind == "extra_forbidden":
        return f"unknown field: {where}"
    message = str(first["msg"]).removeprefix("Value error, ")
    if kind == "value_error" or not where:
        return message
    return f"{where}: {message}"


def checked_elsewhere(**keywords: Any) -> Callable[[dict[str, Any]], None]:
    """For a field's ``json_schema_extra``: JSON Schema keywords that the document states and some other part
    of the service enforces with its own status (415 for a media type, 403 for a signature); the field's
    default, which only stands for "absent", is left out of the document."""

    def amend(schema: dict[str, Any]) -> None:
        schema.pop("default", None)
        schema.update(keywords)

    return amend


@dataclass(frozen=True)
class SavedFile:
    path: Path
    file_name: str
    content_type: str
    size: int


async def read_form(
    request: web.Request, model: type[Model], *, file_field: str, dest: Path, max_bytes: int
) -> tuple[Model, SavedFile | None]:
    """A multipart form: the file part streamed to ``dest`` as it arrives (never held in memory; 413 past
    ``max_bytes``, removing what was written), the other fields validated as ``model``. Repeated fields
    (``name[]``) become lists."""
    if not request.content_type.startswith("multipart/form-data"):
        raise UnsupportedMediaType(f"Content-Type must be multipart/form-data, not {request.content_type}")
    fields: dict[str, Any] = {}
    saved: SavedFile | None = None
    reader = await request.multipart()
    try:
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or not part.name:
                continue
            if part.name == file_field:
                if saved is not None:
                    raise BadRequest(f"{file_field}: send one file")
                saved = await _save_part(part, dest, max_bytes)
                continue
            value = await part.text()
            name = part.name.removesuffix("[]")
            if part.name.endswith("[]") or name in fields:
                previous = fields.get(name, [])
                fields[name] = [*(previous if isinstance(previous, list) else [previous]), value]
            else:
                fields[name] = value
        return validate(model, fields), saved
    except (BadHttpMessage, ValueError) as exc:  # aiohttp's parser: part headers or encodings it cannot read
        if saved is not None:
            saved.path.unlink(missing_ok=True)
        raise BadRequest(f"malformed multipart/form-data body: {exc}") from None
    except BaseException:
        if saved is not None:
            saved.path.unlink(missing_ok=True)
        raise


async def _save_part(part: BodyPartReader, dest: Path, max_bytes: int) -> SavedFile:
    dest.parent.mkdir(parents=True, exist_ok=True)
    size = 0
    try:
        with dest.open("wb") as f:
            while chunk := await part.read_chunk(FORM_CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise PayloadTooLarge(f"file too large: the limit is {max_bytes} bytes")
                await asyncio.to_thread(f.write, chunk)
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return SavedFile(
        dest, part.filename or dest.name, part.headers.get("Content-Type", "application/octet-stream"), size
    )


def openapi_document(
    tables: Iterable[Endpoints], *, title: str, version: str, description: str
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every declared endpoint, one tag per API."""
    schemas: dict[str, Any] = {}
    paths: dict[str, dict[str, Any]] = {}
    tags: list[dict[str, str]] = []
    security_schemes: dict[str, Any] = {}
    for table in tables:
        api = table.api
        tags.append({"name": api.name, "description": f"{api.title}. {api.description}".strip()})
        security_schemes.update(api.security)
        error_ref = _schema_ref(api.error_model, schemas)
        for endpoint in table.declared:
            paths.setdefault(_openapi_path(endpoint.path), {})[endpoint.method.lower()] = _operation(
                endpoint, error_ref, schemas
            )
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "tags": tags,
        "paths": paths,
        "components": {"schemas": dict(sorted(schemas.items())), "securitySchemes": security_schemes},
    }


def _operation(endpoint: Endpoint, error_ref: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    api = endpoint.api
    operation: dict[str, Any] = {
        "tags": [api.name],
        "summary": endpoint.summary,
        "operationId": f"{api.name}_{endpoint.handler.__name__}",
    }
    if endpoint.description:
        operation["description"] = endpoint.description
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
        for name in _PATH_PARAM.findall(endpoint.path)
    ]
    if endpoint.query is not None:
        parameters += _parameters(endpoint.query, "query", schemas)
    if endpoint.headers is not None:
        parameters += _parameters(endpoint.headers, "header", schemas)
    if parameters:
        operation["parameters"] = parameters
    if endpoint.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _schema_ref(endpoint.body, schemas)}},
        }
    elif endpoint.form is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"multipart/form-data": {"schema": _schema_ref(endpoint.form, schemas)}},
        }
    elif endpoint.stream is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {endpoint.stream: {"schema": {"type": "string", "format": "binary"}}},
        }
    if "requestBody" in operation and not endpoint.body_required:
        operation["requestBody"]["required"] = False
    success: dict[str, Any] = {"description": endpoint.summary}
    content: dict[str, Any] = {}
    if endpoint.response is not None:
        content["application/json"] = {"schema": _schema_ref(endpoint.response, schemas)}
    for media_type in endpoint.media_types:
        content.setdefault(media_type, {"schema": {"type": "string"}})
    if content:
        success["content"] = content
    if endpoint.links:
        success["links"] = dict(endpoint.links)
    responses: dict[str, Any] = {str(endpoint.status): success}
    for status in endpoint.errors:
        responses[str(status)] = {
            "description": endpoint.error_notes.get(status) or _ERROR_DESCRIPTIONS.get(status, "error"),
            "content": {"application/json": {"schema": error_ref}},
        }
    if api.request_id_header:
        for answer in responses.values():
            answer["headers"] = {api.request_id_header: {"schema": {"type": "string"}}}
    operation["responses"] = responses
    operation["security"] = api.requirements() if endpoint.secured else []
    return operation


def _parameters(model: type[BaseModel], where: str, schemas: dict[str, Any]) -> list[dict[str, Any]]:
    """A query or header model's fields as OpenAPI parameters (headers by their aliases)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}", by_alias=True)
    schemas.update(schema.get("$defs", {}))
    required = set(schema.get("required", ()))
    parameters = []
    for name, prop in schema.get("properties", {}).items():
        param = {"name": name, "in": where, "required": name in required, "schema": prop}
        if "description" in prop:
            param["description"] = prop["description"]
        parameters.append(param)
    return parameters


def _schema_ref(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    own_name = _SCHEMA_NAME.sub(
        "_", model.__name__
    )  # pydantic's own spelling of a generic's name, Envelope[X]
    for name, definition in {**schema.pop("$defs", {}), own_name: schema}.items():
        if schemas.setdefault(name, definition) != definition:
            raise ValueError(f"two different schemas are both called {name}: rename one")
    return {"$ref": f"#/components/schemas/{own_name}"}


def _openapi_path(path: str) -> str:
    return _PATH_PARAM.sub(lambda m: "{" + m.group(1) + "}", path)


_ERROR_DESCRIPTIONS = {
    400: "a field is missing or not acceptable",
    401: "no key, an unknown key or a bad signature",
    402: "the balance cannot pay",
    403: "forbidden",
    404: "not found",
    409: "conflicts with the current state",
    413: "too large",
    415: "not a media type or content type that is accepted",
    422: "not processable",
    429: "too many requests; see Retry-After",
    500: "internal error (the request id is logged)",
    502: "an upstream service failed",
    503: "a dependency is unavailable",
    504: "an upstream service did not answer in time",
}
