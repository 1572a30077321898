"""The Orpheus async API: resumable uploads, ingest from a URL, jobs, and signed webhooks, on the one core.

    POST /v1/audio/uploads {file_name, mime_type, size_bytes}   -> upload_id, upload_url (signed), expires_at
    PUT  <upload_url> [Content-Range: bytes a-b/size]            -> the core's signed upload URL (no key)
    GET  /v1/audio/uploads/{upload_id}                           -> state and bytes_received: where to resume
    POST /v1/audio/uploads/{upload_id}/complete                  -> checks size and media; idempotent
    POST /v1/audio/ingest {url}                                  -> a session yinzi fills itself from the URL
    POST /v1/audio/jobs {upload_id, task, callback_url, ...}     -> a job: an order placed with api="orpheus"
    GET  /v1/audio/jobs/{job_id}                                 -> status, progress, result and cost

A job id is ``job_`` + the order number, so the native order/query sees the same order and no mapping is
kept. Handing over a finished job's result (a poll, or the webhook that carries it) is the delivery that
charges the order, once. The webhook is one POST of the job, as a poll shows it, signed
``X-Orpheus-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">`` with the user's webhook secret, and
retried at most three times after a non-2xx answer.
"""

from __future__ import annotations

import json
import logging
import re
import time
from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator

from workers.sweeper import webhook_signature
from yinzi import callbacks
from yinzi.accounts import authenticate
from yinzi.appkeys import LINKS, POLICY, SERVICE, SETTINGS, UPLOADS
from yinzi.callbacks import Outgoing
from yinzi.declare import Api, Endpoints, checked_elsewhere, validate
from yinzi.envelope import read_json_object
from yinzi.errors import BadRequest, InsufficientBalance, NotFound, PayloadTooLarge, YinziError
from yinzi.fetch import human_bytes
from yinzi.orders import MAX_PROMPT_CHARS, MAX_URL_LENGTH, UPLOAD_ID, checked_url, parse_create
from yinzi.routes import public_base, upload_url
from yinzi.service import Delivery, OrderService
from yinzi.settings import Settings
from yinzi.store import Order, Upload, User
from yinzi.uploads import MAX_FILE_NAME, MEDIA_TYPE, PLAIN_NAME, SHA256_HEX, UploadDesk

log = logging.getLogger(__name__)

API_NAME = "orpheus"
JOB_PREFIX = "job_"
JOB_ID = re.compile(JOB_PREFIX + r"([A-Za-z0-9]{18})")
SIGNATURE_HEADER = "X-Orpheus-Signature"
MAX_WEBHOOK_RETRIES = 3  # the document: "non-2xx 最多重试 3 次"

TaskName = Literal["transcribe", "separate", "vocals", "accompaniment"]
JobStatus = Literal["queued", "processing", "succeeded", "failed"]
# Orpheus' task names, and beyond its document yinzi's separations, to the core's order types.
TASKS: dict[TaskName, str] = {
    "transcribe": "extract-text",
    "separate": "track-separation",
    "vocals": "extract-voice",
    "accompaniment": "extract-music",
}
TASK_OF: dict[str, TaskName] = {order_type: task for task, order_type in TASKS.items()}
TRANSCRIBE_OPTIONS = ("language", "prompt", "diarize")
STATUSES: dict[str, JobStatus] = {"pending": "queued", "processing": "processing", "finish": "succeeded"}

# The document's error codes by HTTP status. The core's 409 and 422 (an upload in the wrong state, a hash that
# does not match) are "invalid request" here, as the document has no other code for them; a dependency that
# is down (503) is the document's 502.
CODES = {
    400: "invalid_request",
    401: "unauthorized",
    402: "insufficient_credits",
    403: "forbidden",
    404: "not_found",
    413: "file_too_large",
    415: "unsupported_media_type",
    429: "rate_limit_exceeded",
}
AS_BAD_REQUEST = (409, 422)
NO_CREDITS = "the workspace has too few credits for this job: top up, then retry"
# The core words some messages with the native API's field names; here they read as this API's.
NATIVE_WORDS = (
    ("stuff.uploadId must be an upload id from POST /api/open/v1/uploads", "upload_id is not an upload id"),
    ("stuff.", ""),
    ("callbackUrl", "callback_url"),
    ("mimeType", "mime_type"),
    ("sizeBytes", "size_bytes"),
    ("pathKey", "url"),
)


# ---- shapes ------------------------------------------------------------------------------------------------


class OrpheusErrorDetail(BaseModel):
    code: str = Field(description="invalid_request, unauthorized, insufficient_credits, not_found, ...")
    message: str
    request_id: str = Field(description="also in the x-orpheus-request-id header; quote it to support")


class OrpheusError(BaseModel):
    error: OrpheusErrorDetail


class OrpheusProblem(BaseModel):
    code: str
    message: str


class OrpheusUploadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file_name: str = Field(
        min_length=1,
        max_length=MAX_FILE_NAME,
        json_schema_extra={"pattern": PLAIN_NAME},
        description="a plain file name",
    )
    mime_type: str = Field(
        min_length=1,
        max_length=255,
        json_schema_extra=checked_elsewhere(
            pattern=MEDIA_TYPE, description="audio/* or video/*; any other type is refused with 415"
        ),
    )
    size_bytes: StrictInt = Field(
        ge=1,
        json_schema_extra=checked_elsewhere(
            maximum=Settings.orpheus_max_upload_bytes,
            description="the file's exact size; over 2 GiB (YINZI_ORPHEUS_MAX_UPLOAD_BYTES, or less where the "
            "service's own limit is lower) is refused with 413",
        ),
    )

    @field_validator("file_name")
    @classmethod
    def _plain(cls, value: str) -> str:
        if any(c in value for c in "/\\\0") or value in (".", ".."):
            raise ValueError("file_name must be a plain file name, without folders")
        return value


class OrpheusCompleteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sha256: str | None = Field(
        default=None, pattern=SHA256_HEX, description="optional: the file's SHA-256, checked on completion"
    )


class OrpheusIngestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=1,
        max_length=MAX_URL_LENGTH,
        description="an http(s) URL of the media, or a share link; private addresses are refused",
    )


UploadState = Literal["pending", "uploading", "uploaded", "ingesting", "completed", "failed"]


class OrpheusUpload(BaseModel):
    upload_id: str
    file_name: str
    mime_type: str
    size_bytes: int = Field(description="0 while an ingest has not finished downloading")
    state: UploadState = Field(
        description="pending (no bytes yet), uploading, uploaded (every byte, not completed), ingesting "
        "(yinzi is fetching the URL), completed, failed (an ingest that could not finish; see error)"
    )
    bytes_received: int = Field(description="where to resume: PUT from this byte on with Content-Range")
    upload_url: str | None = Field(description="signed PUT URL, no key needed; null once completed")
    expires_at: str = Field(description="ISO 8601 UTC: the session (or completed upload) is deleted then")
    source_url: str | None = Field(description="the URL an ingest fetches")
    sha256: str | None
    duration_seconds: float | None
    error: OrpheusProblem | None


class OrpheusJobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    upload_id: str = Field(min_length=1, description="a completed upload (or completed ingest)")
    task: TaskName = Field(
        description="transcribe; beyond Orpheus: separate (vocals + accompaniment), vocals, accompaniment"
    )
    callback_url: str | None = Field(
        default=None, max_length=MAX_URL_LENGTH, description="http(s) URL for the signed webhook"
    )
    language: str | None = Field(
        default=None, description="transcribe: a Whisper language code; else detected"
    )
    prompt: str | None = Field(
        default=None, max_length=MAX_PROMPT_CHARS, description="transcribe: vocabulary"
    )
    diarize: StrictBool | None = Field(default=None, description="transcribe: label speakers")
    output_format: Literal["mp3", "wav", "flac"] | None = Field(
        default=None, description="separations: the stems' format (default mp3)"
    )


class OrpheusTranscript(BaseModel):
    text: str
    language: str | None
    duration: float
    segments: list[dict[str, Any]]
    words: list[dict[str, Any]]
    speakers: list[str] | None = Field(description="the speakers' labels when diarize was asked for")
    files: dict[str, str] = Field(description="signed URLs of the srt, txt and json files")


class OrpheusStem(BaseModel):
    name: str = Field(description="vocals or accompaniment")
    file_name: str
    url: str = Field(description="signed URL, no key needed; it expires (see url_expires_in)")


class OrpheusSeparation(BaseModel):
    duration: float | None
    stems: list[OrpheusStem]
    url_expires_in: int = Field(description="seconds the stem URLs stay valid; poll again for fresh ones")


class OrpheusJob(BaseModel):
    id: str
    task: TaskName
    status: JobStatus
    progress: int = Field(ge=0, le=100)
    upload_id: str | None
    callback_url: str | None
    language: str | None
    prompt: str | None
    diarize: bool | None
    output_format: str | None
    created_at: str
    finished_at: str | None
    cost: int | None = Field(
        description="credits: the price once it succeeded (charged with the result), 0 when failed"
    )
    result: OrpheusTranscript | OrpheusSeparation | None
    result_expires_at: str | None = Field(description="the result is deleted then")
    error: OrpheusProblem | None


# ---- the API -------------------------------------------------------------------------------------------------


def orpheus_error(exc: YinziError, request_id: str) -> web.Response:
    status = 400 if exc.status in AS_BAD_REQUEST else exc.status
    if status > 500:
        status = 502
    code = CODES.get(status, "internal_error" if status >= 500 else "invalid_request")
    message = NO_CREDITS if isinstance(exc, InsufficientBalance) else _reworded(exc.msg)
    body = {"error": {"code": code, "message": message, "request_id": request_id}}
    return web.json_response(body, status=status)


def _reworded(message: str) -> str:
    for native, own in NATIVE_WORDS:
        message = message.replace(native, own)
    return message


API = Api(
    name=API_NAME,
    title="Orpheus async API",
    description="Orpheus' public token API (uploads, ingest, jobs, signed webhooks): change only the base URL "
    "and the key. Jobs beyond Orpheus: separate, vocals, accompaniment.",
    error=orpheus_error,
    error_model=OrpheusError,
    request_id_header="x-orpheus-request-id",
    security={"orpheusKey": {"type": "http", "scheme": "bearer", "description": "a yinzi API key"}},
    authenticate=authenticate,
)
endpoints = Endpoints(API)


@endpoints.post(
    "/v1/audio/uploads",
    summary="Create an upload session",
    links={
        "GetUpload": API.link("get_upload", {"upload_id": "$response.body#/upload_id"}),
        "CompleteUpload": API.link("complete_upload", {"upload_id": "$response.body#/upload_id"}),
        "CreateJob": API.link(
            "create_job", {}, body={"upload_id": "$response.body#/upload_id", "task": "transcribe"}
        ),
    },
    body=OrpheusUploadRequest,
    response=OrpheusUpload,
    errors=(400, 413, 415),
)
async def create_upload(request: web.Request, body: OrpheusUploadRequest) -> web.Response:
    """PUT the bytes to ``upload_url`` (whole, or in parts with ``Content-Range``), then complete it."""
    user = await authenticate(request)
    limit = request.app[SETTINGS].orpheus_max_upload_bytes
    if body.size_bytes > limit:
        raise PayloadTooLarge(f"size_bytes {body.size_bytes} is over the limit of {human_bytes(limit)}")
    upload = await request.app[UPLOADS].open(user, body.file_name, body.mime_type, body.size_bytes)
    return _json(_upload_view(request, upload))


@endpoints.get(
    "/v1/audio/uploads/{upload_id}", summary="Inspect an upload", response=OrpheusUpload, errors=(404,)
)
async def get_upload(request: web.Request) -> web.Response:
    """Its state and bytes received, to resume an interrupted upload; an ingest's progress or failure."""
    user = await authenticate(request)
    upload = await request.app[UPLOADS].owned(user, request.match_info["upload_id"])
    return _json(_upload_view(request, upload))


@endpoints.post(
    "/v1/audio/uploads/{upload_id}/complete",
    summary="Complete an upload",
    response=OrpheusUpload,
    errors=(400, 404, 415),
)
async def complete_upload(request: web.Request) -> web.Response:
    """Checks that every byte arrived and that they are audio or video. Idempotent. An optional JSON body
    ``{"sha256": "..."}`` is checked against the bytes."""
    user = await authenticate(request)
    sha256 = None
    if request.can_read_body:
        body = validate(OrpheusCompleteRequest, await read_json_object(request))
        sha256 = body.sha256.lower() if body.sha256 else None
    upload = await request.app[UPLOADS].complete(user, request.match_info["upload_id"], sha256)
    return _json(_upload_view(request, upload))


@endpoints.post(
    "/v1/audio/ingest",
    summary="Create an upload session filled from a URL",
    links={"GetUpload": API.link("get_upload", {"upload_id": "$response.body#/upload_id"})},
    body=OrpheusIngestRequest,
    response=OrpheusUpload,
    errors=(400,),
)
async def ingest(request: web.Request, body: OrpheusIngestRequest) -> web.Response:
    """Best effort: yinzi downloads the URL (a share link is resolved first) into a new session, which
    completes by itself. Poll it like any upload: ``ingesting``, then ``completed`` or ``failed``."""
    app = request.app
    user = await authenticate(request)
    url = checked_url(body.url.strip(), "url", app[POLICY])
    settings = app[SETTINGS]
    upload = await app[UPLOADS].ingest(
        user,
        url,
        app[LINKS],
        max_bytes=min(settings.orpheus_max_upload_bytes, settings.max_download_bytes),
    )
    return _json(_upload_view(request, upload))


@endpoints.post(
    "/v1/audio/jobs",
    summary="Create an async job",
    links={"GetJob": API.link("get_job", {"job_id": "$response.body#/id"})},
    body=OrpheusJobRequest,
    response=OrpheusJob,
    errors=(400, 402, 404, 502),
)
async def create_job(request: web.Request, body: OrpheusJobRequest) -> web.Response:
    """A job on a completed upload; its webhook goes to ``callback_url`` once it ends."""
    app = request.app
    user = await authenticate(request)
    if not UPLOAD_ID.fullmatch(body.upload_id):
        raise BadRequest("upload_id must be an id from POST /v1/audio/uploads or POST /v1/audio/ingest")
    stuff: dict[str, Any] = {"uploadId": body.upload_id}
    if body.task == "transcribe":
        if body.output_format is not None:
            raise BadRequest("output_format applies to the separation tasks, not to transcribe")
        stuff.update(
            {name: getattr(body, name) for name in TRANSCRIBE_OPTIONS if getattr(body, name) is not None}
        )
    else:
        if any(getattr(body, name) is not None for name in TRANSCRIBE_OPTIONS):
            raise BadRequest(f"{', '.join(TRANSCRIBE_OPTIONS)} apply to task transcribe only")
        if body.output_format is not None:
            stuff["format"] = body.output_format
    native: dict[str, Any] = {"orderType": TASKS[body.task], "stuff": stuff}
    if body.callback_url is not None:
        native["callbackUrl"] = body.callback_url
    order = parse_create(native, app[POLICY])
    upload = await app[UPLOADS].owned(user, body.upload_id)
    if upload.state != "complete":
        raise BadRequest(_not_complete(app[UPLOADS], upload))
    service = app[SERVICE]
    placed = await service.place(user, order, api=API_NAME)
    return _json(_job_view(service.settings, await service.find(user, placed.order_no)))


@endpoints.get("/v1/audio/jobs/{job_id}", summary="Poll a job", response=OrpheusJob, errors=(402, 404))
async def get_job(request: web.Request) -> web.Response:
    """Status and progress; once it succeeded, the result and its cost. The first answer with the result
    charges the job (once, however many polls race); a balance too short answers 402 and withholds the
    result until a top-up."""
    user = await authenticate(request)
    service = request.app[SERVICE]
    match = JOB_ID.fullmatch(request.match_info["job_id"])
    if match is None:
        raise NotFound("job not found")
    try:
        order = await service.find(user, match.group(1))
    except NotFound:
        raise NotFound("job not found") from None
    if order.api != API_NAME:
        raise NotFound("job not found")
    delivery, job = await _hand_over(service, user, order, public_base(request))
    if delivery.short:
        raise InsufficientBalance()
    return _json(job)


# ---- views ---------------------------------------------------------------------------------------------------


def _json(model: BaseModel) -> web.Response:
    return web.json_response(model.model_dump(mode="json"))


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _upload_state(desk: UploadDesk, upload: Upload, received: int) -> UploadState:
    if upload.state == "complete":
        return "completed"
    if desk.failure(upload) is not None:
        return "failed"
    if upload.source_url is not None:
        return "ingesting"
    if received == 0:
        return "pending"
    return "uploaded" if received == upload.size_bytes else "uploading"


def _not_complete(desk: UploadDesk, upload: Upload) -> str:
    failure = desk.failure(upload)
    if failure is not None:
        return f"upload {upload.id} failed and cannot be used: {failure}"
    if upload.source_url is not None:
        return f"upload {upload.id} is not complete: it is still being fetched from its URL; poll it"
    return (
        f"upload {upload.id} is not complete: PUT its bytes ({desk.received(upload)} of {upload.size_bytes} "
        f"received), then POST /v1/audio/uploads/{upload.id}/complete"
    )


def _upload_view(request: web.Request, upload: Upload) -> OrpheusUpload:
    desk = request.app[UPLOADS]
    received = desk.received(upload)
    state = _upload_state(desk, upload, received)
    failure = desk.failure(upload)
    return OrpheusUpload(
        upload_id=upload.id,
        file_name=upload.file_name,
        mime_type=upload.mime_type,
        size_bytes=upload.size_bytes,
        state=state,
        bytes_received=received,
        upload_url=upload_url(request, upload) if state in ("pending", "uploading", "uploaded") else None,
        expires_at=_iso(upload.expires_at),
        source_url=upload.source_url,
        sha256=upload.sha256,
        duration_seconds=upload.duration,
        error=OrpheusProblem(code="ingest_failed", message=failure) if failure else None,
    )


async def _hand_over(
    service: OrderService, owner: User, order: Order, base: str
) -> tuple[Delivery, OrpheusJob]:
    """The job as its owner may see it now, delivering (charging) a finished one. The result is read before
    the charge, so a result that cannot be read is never paid for."""
    result = await _result(service, order, base) if order.status == "finish" and not order.expired else None
    delivery = await service.deliver(owner, order.order_no)
    if delivery.paid and result is None:  # it finished between the two reads
        result = await _result(service, delivery.order, base)
    job = _job_view(service.settings, delivery.order, result if delivery.paid else None)
    if delivery.short:
        job.error = OrpheusProblem(code="insufficient_credits", message=NO_CREDITS)
    return delivery, job


def _job_view(
    settings: Settings, order: Order, result: OrpheusTranscript | OrpheusSeparation | None = None
) -> OrpheusJob:
    stuff = order.stuff
    finished = order.status == "finish"
    error = None
    if order.status == "timeout":
        error = OrpheusProblem(code="timeout", message=order.reason or "the job took too long")
    elif order.terminal and not finished:
        error = OrpheusProblem(code="job_failed", message=order.reason or "the job failed")
    elif finished and order.expired:
        error = OrpheusProblem(code="result_expired", message="the result has been deleted (retention)")
    if finished and (order.pay_status == "paid" or not order.expired):
        cost: int | None = order.cost
    else:
        cost = 0 if order.terminal else None
    return OrpheusJob(
        id=JOB_PREFIX + order.order_no,
        task=TASK_OF[order.order_type],
        status=STATUSES.get(order.status, "failed"),  # failed and timeout
        progress=100 if order.terminal else order.progress,
        upload_id=stuff.get("uploadId"),
        callback_url=order.callback_url,
        language=stuff.get("language"),
        prompt=stuff.get("prompt"),
        diarize=stuff.get("diarize"),
        output_format=stuff.get("format"),
        created_at=_iso(order.created_at),
        finished_at=_iso(order.finished_at) if order.finished_at else None,
        cost=cost,
        result=result,
        result_expires_at=_iso(order.finished_at + settings.result_retention)
        if finished and order.finished_at and not order.expired
        else None,
        error=error,
    )


async def _result(service: OrderService, order: Order, base: str) -> OrpheusTranscript | OrpheusSeparation:
    def url(name: str) -> str:
        return base + service.result_path(order, name)

    if order.order_type != "extract-text":
        return OrpheusSeparation(
            duration=order.duration,
            stems=[OrpheusStem(name=r.business, file_name=r.name, url=url(r.name)) for r in order.results],
            url_expires_in=service.settings.result_url_ttl,
        )
    transcript = await service.transcript(order)
    return OrpheusTranscript(
        text=transcript["text"],
        language=transcript.get("language"),
        duration=transcript["duration"],
        segments=transcript["segments"],
        words=transcript["words"],
        speakers=transcript.get("speakers") if order.stuff.get("diarize") else None,
        files={r.business: url(r.name) for r in order.results if r.name != "transcript.json"}
        | {"json": url("transcript.json")},
    )


# ---- the webhook ---------------------------------------------------------------------------------------------


class OrpheusWebhooks:
    """The job, as a poll shows it, in one signed POST. Carrying the result, it delivers (charges) the job."""

    async def render(self, service: OrderService, order: Order, secret: str) -> Outgoing:
        # deliver() needs only the owner's id; the order is this user's by construction.
        owner = User(id=order.user_id, name="", balance=0)
        try:
            _, job = await _hand_over(service, owner, order, service.settings.public_url or "")
        except Exception:  # the receiver still learns that the job ended; a poll retries the result
            log.exception("the result of %s could not be read for its webhook", order.order_no)
            job = _job_view(service.settings, order)
            job.error = OrpheusProblem(
                code="internal_error", message="the result could not be read; poll the job"
            )
        body = json.dumps(job.model_dump(mode="json"), ensure_ascii=False).encode()
        return Outgoing(
            body=body,
            headers={SIGNATURE_HEADER: webhook_signature(secret, int(time.time()), body)},
            retry_delays=retry_delays(service.settings),
        )


def retry_delays(settings: Settings) -> tuple[float, ...]:
    """Exactly the document's three retries, paced by the service's webhook delays (the last one repeated
    when fewer are set)."""
    delays = settings.webhook_retry_delays or (0.0,)
    return tuple(delays[min(i, len(delays) - 1)] for i in range(MAX_WEBHOOK_RETRIES))


callbacks.register(API_NAME, OrpheusWebhooks())
