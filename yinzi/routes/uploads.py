"""The native API's resumable uploads (the work is done by yinzi/uploads.py).

    POST /api/open/v1/uploads {fileName, mimeType, sizeBytes}   -> uploadId, uploadUrl (signed), expiresAt
    PUT  <uploadUrl>  [Content-Range: bytes a-b/size]           -> the bytes at a..b (no range: the whole file)
    GET  /api/open/v1/uploads/{id}                              -> state and bytes received: where to resume
    POST /api/open/v1/uploads/{id}/complete [{sha256}]          -> checks size, hash and media; idempotent

The signed uploadUrl is the same for every API: any API's upload session takes its bytes there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from yinzi import store
from yinzi.accounts import authenticate
from yinzi.appkeys import SIGNER, UPLOADS
from yinzi.declare import checked_elsewhere
from yinzi.envelope import ok
from yinzi.routes import upload_url
from yinzi.routes.api import API, Envelope, SignedUrl, Strict, endpoints, optional
from yinzi.uploads import MAX_FILE_NAME, MEDIA_TYPE, PLAIN_NAME, SHA256_HEX, UploadDesk

CHUNK_BYTES = 256 * 1024
UPLOAD_ID = "$response.body#/data/uploadId"
# A name without folders: no separators, no NUL, and not "." or "..".


class NewUpload(Strict):
    field_messages: ClassVar[Mapping[str, str]] = {
        "fileName": f"fileName must be a string of 1 to {MAX_FILE_NAME} characters",
        "mimeType": "mimeType is required, such as audio/mpeg or video/mp4",
        "sizeBytes": "sizeBytes must be a whole number of bytes, at least 1",
    }

    fileName: str = Field(min_length=1, max_length=MAX_FILE_NAME, json_schema_extra={"pattern": PLAIN_NAME})
    mimeType: str = Field(
        min_length=1,
        json_schema_extra=checked_elsewhere(
            pattern=MEDIA_TYPE, description="audio/* or video/*; any other type is answered 415"
        ),
    )
    sizeBytes: int = Field(
        ge=1, description="the whole file; over YINZI_MAX_DOWNLOAD_BYTES (default 2 GiB) is answered 413"
    )

    @field_validator("sizeBytes", mode="before")
    @classmethod
    def _whole(cls, size: Any) -> Any:
        # JSON has one number type: 5.0 is the integer 5 (as JSON Schema's "integer" says), 5.5 is not.
        return int(size) if isinstance(size, float) and size.is_integer() else size

    @field_validator("fileName")
    @classmethod
    def _plain(cls, name: str) -> str:
        if "/" in name or "\\" in name or "\0" in name or name in (".", ".."):
            raise ValueError("fileName must be a plain file name, without folders")
        return name


class CompleteUpload(Strict):
    field_messages: ClassVar[Mapping[str, str]] = {"sha256": "sha256 must be 64 hexadecimal characters"}

    sha256: str | None = Field(
        default=None, pattern=SHA256_HEX, description="checked against the bytes received"
    )


class ContentRange(BaseModel):
    range: str = Field(
        default="",
        alias="Content-Range",
        json_schema_extra=checked_elsewhere(
            pattern=r"^bytes [0-9]+-[0-9]+/[0-9]+$",
            description="bytes <first>-<last>/<sizeBytes>: a part, starting at the bytes received; "
            "absent: the whole file",
        ),
    )


class Upload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    uploadId: str
    fileName: str
    mimeType: str
    sizeBytes: int = Field(ge=1)
    state: Literal["open", "complete"]
    expiresAt: int = Field(description="Unix seconds")
    received: int = Field(ge=0, description="bytes stored: resume from here")
    uploadUrl: str = optional("open sessions: PUT the bytes here (signed, no key needed)")
    sha256: str | None = Field(
        default=None, json_schema_extra=checked_elsewhere(description="complete sessions")
    )
    durationSeconds: float | None = Field(
        default=None, json_schema_extra=checked_elsewhere(description="complete sessions")
    )


UploadAnswer = Envelope[Upload]
UPLOAD_LINKS = {
    "UploadState": API.link("upload_state", {"uploadId": UPLOAD_ID}),
    "PutBytes": API.link("put_bytes", {"uploadId": UPLOAD_ID}),
    "Complete": API.link("complete", {"uploadId": UPLOAD_ID}),
}


@endpoints.post(
    "/api/open/v1/uploads",
    summary="Open a resumable upload session",
    body=NewUpload,
    response=UploadAnswer,
    errors={
        400: "a missing or invalid field",
        413: "sizeBytes over the limit, or the request body too large",
        415: "mimeType is not audio or video, or Content-Type is not application/json",
        503: "a dependency is unavailable",
    },
    links=UPLOAD_LINKS,
)
async def create_upload(request: web.Request, new: NewUpload) -> web.Response:
    user = await authenticate(request)
    upload = await request.app[UPLOADS].open(user, new.fileName, new.mimeType, new.sizeBytes)
    return ok(_view(request, upload))


@endpoints.put(
    "/uploads/{uploadId}",
    summary="The bytes of an upload (its signed uploadUrl): the whole file, or a Content-Range",
    description="No key needed: the URL is signed, like a presigned object-store URL.",
    query=SignedUrl,
    headers=ContentRange,
    stream="application/octet-stream",
    response=UploadAnswer,
    errors={
        400: "a malformed Content-Range",
        403: "an invalid or expired signature",
        404: "upload not found (expired, or never existed)",
        409: "the range does not start at the bytes received (see Upload-Offset), or the upload is complete",
        413: "more bytes than the range or sizeBytes",
        503: "the bytes could not be stored",
    },
    secured=False,
)
async def put_bytes(request: web.Request, signed: SignedUrl) -> web.Response:
    app = request.app
    upload_id = request.match_info["uploadId"]
    app[SIGNER].verify_upload(upload_id, signed.expires, signed.sig)
    chunks = request.content.iter_chunked(CHUNK_BYTES)
    upload = await app[UPLOADS].write(upload_id, request.headers.get("Content-Range"), chunks)
    return ok(_view(request, upload))


@endpoints.get(
    "/api/open/v1/uploads/{uploadId}",
    summary="An upload session's state and bytes received (where to resume)",
    response=UploadAnswer,
    errors={404: "upload not found (also another user's)"},
)
async def upload_state(request: web.Request) -> web.Response:
    user = await authenticate(request)
    return ok(_view(request, await request.app[UPLOADS].owned(user, request.match_info["uploadId"])))


@endpoints.post(
    "/api/open/v1/uploads/{uploadId}/complete",
    summary="Finish an upload: checks its size, sha256 (when given) and that it is audio or video",
    description="Idempotent: completing a complete upload answers it again.",
    body=CompleteUpload,
    body_required=False,
    response=UploadAnswer,
    errors={
        400: "an invalid field",
        404: "upload not found",
        409: "bytes missing, or another request is writing the upload",
        413: "request body too large",
        415: "the bytes are not audio or video, or Content-Type is not application/json",
        422: "sha256 does not match",
        503: "a dependency is unavailable",
    },
    links={
        "Order": API.link(
            "create_order",
            {},
            body={"orderType": "extract-text", "stuff": {"uploadId": UPLOAD_ID}},
        ),
        "Price": API.link("calculate", {}, body={"orderType": "extract-text", "uploadId": UPLOAD_ID}),
    },
)
async def complete(request: web.Request, done: CompleteUpload) -> web.Response:
    user = await authenticate(request)
    expected = done.sha256.lower() if done.sha256 else None
    upload = await request.app[UPLOADS].complete(user, request.match_info["uploadId"], expected)
    return ok(_view(request, upload))


def _view(request: web.Request, upload: store.Upload) -> dict[str, Any]:
    desk: UploadDesk = request.app[UPLOADS]
    view: dict[str, Any] = {
        "uploadId": upload.id,
        "fileName": upload.file_name,
        "mimeType": upload.mime_type,
        "sizeBytes": upload.size_bytes,
        "state": upload.state,
        "expiresAt": int(upload.expires_at),
        "received": desk.received(upload),
    }
    if upload.state == "open":
        view["uploadUrl"] = upload_url(request, upload)
    else:
        view.update(sha256=upload.sha256, durationSeconds=upload.duration)
    return view
