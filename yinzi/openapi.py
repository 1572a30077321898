"""The OpenAPI 3 description of the public API, served at /openapi.json."""

from __future__ import annotations

from typing import Any

from yinzi.orders import CHINESE_SCRIPTS, MAX_PROMPT_CHARS, OUTPUT_FORMATS, TEXT_NUMBERS
from yinzi.pricing import PRIORITIES
from yinzi.settings import ORDER_TYPES

TEXT_NUMBER_NOTES = {
    "beamSize": "extract-text: beam search width (default 5, as the whisper command; 1 decodes greedily)",
    "speakers": "extract-text with diarize: how many speakers there are (estimated when absent)",
    "maxLineChars": "extract-text: longest subtitle line in characters (default 42; 16 for Chinese and Japanese)",
    "maxLines": "extract-text: lines per subtitle (default 2)",
    "maxCaptionSeconds": "extract-text: longest time one subtitle stays on screen (default 7)",
}

ORDER_STATUSES = ["pending", "processing", "finish", "failed", "timeout"]
PAY_STATUSES = ["waiting", "paid", "free"]


def _envelope(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["code", "data", "msg"],
        "properties": {"code": {"type": "integer", "enum": [0]}, "data": data, "msg": {"type": "string"}},
    }


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


AUTH_ERRORS = {
    "401": _error("API Key is required / Invalid API Key / a bad request signature"),
    "429": _error("over the key's requests per minute; see Retry-After and X-RateLimit-*"),
}


def _body(schema: str) -> dict[str, Any]:
    return {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def _answer(schema: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


UPLOAD_ID = {"name": "uploadId", "in": "path", "required": True, "schema": {"type": "string"}}


def openapi_document() -> dict[str, Any]:
    order_type = {"type": "string", "enum": list(ORDER_TYPES)}
    priority = {
        "type": "string",
        "enum": list(PRIORITIES),
        "description": "lightning costs more (YINZI_LIGHTNING_MULTIPLIER) and starts before queued orders",
    }
    document: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {
            "title": "yinzi open-platform API",
            "version": "1.0.0",
            "description": (
                "Audio processing orders (stem separation, transcription) billed in points. Every response is "
                "the envelope {code, data, msg}; on errors code equals the HTTP status and data is null."
            ),
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "query", "name": "apiKey"},
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["code", "data", "msg"],
                    "properties": {
                        "code": {"type": "integer", "minimum": 400, "maximum": 599},
                        "data": {"nullable": True, "enum": [None]},
                        "msg": {"type": "string"},
                    },
                },
                "CreateOrder": {
                    "type": "object",
                    "required": ["orderType", "stuff"],
                    "additionalProperties": False,
                    "properties": {
                        "orderType": order_type,
                        "priority": priority,
                        "callbackUrl": {
                            "type": "string",
                            "description": "POSTed once the order ends, signed with X-Yinzi-Signature (see README)",
                        },
                        "stuff": {
                            "type": "object",
                            "additionalProperties": False,
                            "description": "pathKey or uploadId, and the order type's options",
                            "properties": {
                                "pathKey": {
                                    "type": "string",
                                    "description": "http(s) URL of the media, or a short-video share link or text",
                                },
                                "uploadId": {"type": "string", "description": "a completed upload session"},
                                "format": {
                                    "type": "string",
                                    "enum": list(OUTPUT_FORMATS),
                                    "description": "separation orders: result format (default mp3)",
                                },
                                "language": {
                                    "type": "string",
                                    "description": "extract-text: language code such as en or zh (detected if absent)",
                                },
                                "prompt": {
                                    "type": "string",
                                    "maxLength": MAX_PROMPT_CHARS,
                                    "description": "extract-text: hot words or an initial prompt",
                                },
                                "model": {
                                    "type": "string",
                                    "description": "extract-text: Whisper model, e.g. small",
                                },
                                "chinese": {
                                    "type": "string",
                                    "enum": list(CHINESE_SCRIPTS),
                                    "description": "extract-text: script of Chinese output (default simplified)",
                                },
                                "vad": {
                                    "type": "boolean",
                                    "description": "extract-text: transcribe only where voice activity is found (default true)",
                                },
                                "diarize": {
                                    "type": "boolean",
                                    "description": "extract-text: label every segment and word with its speaker",
                                },
                                **{
                                    name: {
                                        "type": "integer" if whole else "number",
                                        "minimum": low,
                                        "maximum": high,
                                        "description": TEXT_NUMBER_NOTES[name],
                                    }
                                    for name, (low, high, whole) in TEXT_NUMBERS.items()
                                },
                            },
                        },
                    },
                },
                "CreatedOrder": _envelope(
                    {
                        "type": "object",
                        "required": ["orderNo", "orderType", "orderStatus", "payStatus", "messageId"],
                        "properties": {
                            "orderNo": {"type": "string", "pattern": "^[A-Za-z0-9]{18}$"},
                            "orderType": order_type,
                            "orderStatus": {"type": "string", "enum": ORDER_STATUSES},
                            "payStatus": {"type": "string", "enum": PAY_STATUSES},
                            "messageId": {"type": "string"},
                            "priority": priority,
                        },
                    }
                ),
                "Calculate": {
                    "type": "object",
                    "required": ["orderType"],
                    "additionalProperties": False,
                    "properties": {
                        "orderType": order_type,
                        "durationSeconds": {"type": "number", "exclusiveMinimum": True, "minimum": 0},
                        "uploadId": {"type": "string"},
                        "priority": priority,
                    },
                    "description": "durationSeconds or uploadId, one of them",
                },
                "Price": _envelope(
                    {
                        "type": "object",
                        "properties": {
                            "orderType": order_type,
                            "priority": priority,
                            "durationSeconds": {"type": "number"},
                            "minutesBilled": {"type": "integer"},
                            "cost": {"type": "integer"},
                            "balance": {"type": "integer"},
                        },
                    }
                ),
                "NewUpload": {
                    "type": "object",
                    "required": ["fileName", "mimeType", "sizeBytes"],
                    "additionalProperties": False,
                    "properties": {
                        "fileName": {"type": "string", "maxLength": 255},
                        "mimeType": {"type": "string", "description": "audio/* or video/*"},
                        "sizeBytes": {"type": "integer", "minimum": 1},
                    },
                },
                "CompleteUpload": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"sha256": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}},
                },
                "Upload": _envelope(
                    {
                        "type": "object",
                        "properties": {
                            "uploadId": {"type": "string"},
                            "fileName": {"type": "string"},
                            "mimeType": {"type": "string"},
                            "sizeBytes": {"type": "integer"},
                            "received": {"type": "integer", "description": "bytes stored: resume from here"},
                            "state": {"type": "string", "enum": ["open", "complete"]},
                            "expiresAt": {"type": "integer", "description": "Unix seconds"},
                            "uploadUrl": {
                                "type": "string",
                                "description": "open sessions: PUT the bytes here",
                            },
                            "sha256": {"type": "string"},
                            "durationSeconds": {"type": "number"},
                        },
                    }
                ),
                "Order": _envelope(
                    {
                        "type": "object",
                        "required": [
                            "orderNo",
                            "orderType",
                            "status",
                            "payStatus",
                            "progress",
                            "cost",
                            "reason",
                            "stuffs",
                            "balance",
                        ],
                        "properties": {
                            "orderNo": {"type": "string"},
                            "orderType": order_type,
                            "status": {"type": "string", "enum": ORDER_STATUSES},
                            "payStatus": {
                                "type": "string",
                                "enum": PAY_STATUSES,
                                "description": "waiting: not charged yet; paid: charged; free: failed or timed out",
                            },
                            "progress": {"type": "integer", "minimum": 0, "maximum": 100},
                            "cost": {
                                "type": "integer",
                                "description": "points; charged on the first query after finish",
                            },
                            "reason": {"type": "string", "nullable": True},
                            "stuffs": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["name", "business", "url"],
                                    "properties": {
                                        "name": {"type": "string"},
                                        "business": {"type": "string"},
                                        "url": {"type": "string", "description": "signed, valid for 1 hour"},
                                    },
                                },
                            },
                            "balance": {"type": "integer"},
                            "priority": priority,
                        },
                    }
                ),
                "Analyze": {
                    "type": "object",
                    "required": ["link"],
                    "additionalProperties": False,
                    "properties": {
                        "link": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": 4096,
                            "description": "a share link, or a whole pasted share text containing one",
                        }
                    },
                },
                "Analysis": _envelope(
                    {
                        "type": "object",
                        "properties": {
                            "title": {"type": "string"},
                            "author": {"type": "string"},
                            "cover": {"type": "string", "nullable": True},
                            "videoUrl": {
                                "type": "string",
                                "nullable": True,
                                "description": "without watermark; null for image posts",
                            },
                            "musicUrl": {"type": "string", "nullable": True},
                            "images": {"type": "array", "items": {"type": "string"}},
                            "platform": {
                                "type": "string",
                                "description": "douyin, kuaishou, ... or yt-dlp's",
                            },
                            "balance": {"type": "integer"},
                        },
                    }
                ),
                "Health": _envelope({"type": "object"}),
            },
        },
        "security": [{"bearer": []}, {"apiKey": []}],
        "paths": {
            "/api/open/v1/order/create": {
                "post": {
                    "summary": "Create a processing order",
                    "operationId": "createOrder",
                    "parameters": [
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string", "maxLength": 255},
                            "description": "a retry with the same key and body within 24 h returns the first answer",
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/CreateOrder"}}
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "created",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/CreatedOrder"}}
                            },
                        },
                        "400": _error("malformed JSON, missing or invalid field (pathKey is required, ...)"),
                        **AUTH_ERRORS,
                        "402": _error(
                            "ErrorCode.USER_BLANCE_NOT_ENOUGH: balance below one minute of this order type"
                        ),
                        "413": _error("request body too large"),
                        "415": _error("Content-Type is not application/json"),
                        "500": _error("internal error"),
                        "404": _error("upload not found"),
                        "409": _error(
                            "the upload is not complete, or the Idempotency-Key's first request is running"
                        ),
                        "422": _error("Idempotency-Key reused with a different body"),
                        "503": _error("job queue unavailable; nothing was created"),
                    },
                }
            },
            "/api/open/v1/order/query": {
                "get": {
                    "summary": "Query an order; the first query after it finishes charges its cost",
                    "operationId": "queryOrder",
                    "parameters": [
                        {"name": "orderNo", "in": "query", "required": True, "schema": {"type": "string"}}
                    ],
                    "responses": {
                        "200": {
                            "description": "the order",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/Order"}}
                            },
                        },
                        "400": _error("orderNo is required"),
                        **AUTH_ERRORS,
                        "402": _error("finished but the balance is short: top up and query again"),
                        "404": _error("Order not found"),
                        "500": _error("internal error"),
                    },
                }
            },
            "/api/open/v1/order/calculate": {
                "post": {
                    "summary": "The price of an order, creating nothing",
                    "operationId": "calculatePrice",
                    "requestBody": _body("Calculate"),
                    "responses": {
                        "200": _answer("Price", "cost in points and the current balance"),
                        "400": _error("a missing or invalid field"),
                        **AUTH_ERRORS,
                        "404": _error("upload not found"),
                        "409": _error("the upload is not complete"),
                    },
                }
            },
            "/api/open/v1/uploads": {
                "post": {
                    "summary": "Open a resumable upload session (up to 2 GiB)",
                    "operationId": "createUpload",
                    "requestBody": _body("NewUpload"),
                    "responses": {
                        "200": _answer("Upload", "the session, with its signed uploadUrl"),
                        "400": _error("a missing or invalid field"),
                        **AUTH_ERRORS,
                        "413": _error("sizeBytes over the limit"),
                        "415": _error("mimeType is not audio or video"),
                    },
                }
            },
            "/api/open/v1/uploads/{uploadId}": {
                "get": {
                    "summary": "An upload session's state and bytes received (where to resume)",
                    "operationId": "uploadState",
                    "parameters": [UPLOAD_ID],
                    "responses": {
                        "200": _answer("Upload", "the session"),
                        **AUTH_ERRORS,
                        "404": _error("upload not found"),
                    },
                }
            },
            "/api/open/v1/uploads/{uploadId}/complete": {
                "post": {
                    "summary": "Finish an upload: checks size, sha256 (optional) and that it is audio or video",
                    "operationId": "completeUpload",
                    "parameters": [UPLOAD_ID],
                    "requestBody": {**_body("CompleteUpload"), "required": False},
                    "responses": {
                        "200": _answer("Upload", "complete (again, if it already was)"),
                        "400": _error("an invalid field"),
                        **AUTH_ERRORS,
                        "404": _error("upload not found"),
                        "409": _error("bytes missing, or another request is writing the upload"),
                        "415": _error("the bytes are not audio or video"),
                        "422": _error("sha256 does not match"),
                    },
                }
            },
            "/uploads/{uploadId}": {
                "put": {
                    "summary": "The bytes of an upload (the signed uploadUrl): whole, or a Content-Range",
                    "operationId": "putUpload",
                    "security": [],
                    "parameters": [
                        UPLOAD_ID,
                        {"name": "expires", "in": "query", "required": True, "schema": {"type": "string"}},
                        {"name": "sig", "in": "query", "required": True, "schema": {"type": "string"}},
                        {
                            "name": "Content-Range",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string", "example": "bytes 0-1048575/52428800"},
                        },
                    ],
                    "requestBody": {"required": True, "content": {"application/octet-stream": {}}},
                    "responses": {
                        "200": _answer("Upload", "stored; received tells the bytes so far"),
                        "400": _error("a malformed Content-Range"),
                        "403": _error("invalid or expired signature"),
                        "404": _error("upload not found"),
                        "409": _error("the range does not start at the bytes received (see Upload-Offset)"),
                        "413": _error("more bytes than the range or sizeBytes"),
                    },
                }
            },
            "/api/open/v1/short-video/analyze": {
                "post": {
                    "summary": "Resolve a short-video share link (Douyin, Kuaishou, Xiaohongshu, Weibo, yt-dlp sites)",
                    "description": "Charged per successful call (1 point by default); a failed call costs nothing.",
                    "operationId": "analyzeShortVideo",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Analyze"}}},
                    },
                    "responses": {
                        "200": {
                            "description": "the post's media",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/Analysis"}}
                            },
                        },
                        "400": _error("link is required / unsupported link / a private address"),
                        **AUTH_ERRORS,
                        "402": _error("ErrorCode.USER_BLANCE_NOT_ENOUGH"),
                        "413": _error("request body too large"),
                        "415": _error("Content-Type is not application/json"),
                        "500": _error("internal error"),
                        "502": _error(
                            "the platform answered but the post could not be resolved (removed, ...)"
                        ),
                        "504": _error("the platform did not answer in time"),
                    },
                }
            },
            "/files/{orderNo}/{name}": {
                "get": {
                    "summary": "Download a result file through the signed URL given by order/query",
                    "operationId": "resultFile",
                    "security": [],
                    "parameters": [
                        {"name": "orderNo", "in": "path", "required": True, "schema": {"type": "string"}},
                        {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                        {"name": "expires", "in": "query", "required": True, "schema": {"type": "string"}},
                        {"name": "sig", "in": "query", "required": True, "schema": {"type": "string"}},
                    ],
                    "responses": {
                        "200": {"description": "the file", "content": {"application/octet-stream": {}}},
                        "403": _error("invalid or expired signature"),
                        "404": _error("file not found"),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness and dependency check",
                    "operationId": "health",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "healthy",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/Health"}}
                            },
                        },
                        "503": _error("a dependency is down"),
                    },
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Readiness for load balancers: the database and the job queue answer",
                    "operationId": "ready",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "ready",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/Health"}}
                            },
                        },
                        "503": _error("not ready: the database or the job queue does not answer"),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics (text exposition format)",
                    "operationId": "metrics",
                    "security": [],
                    "responses": {"200": {"description": "metrics", "content": {"text/plain": {}}}},
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "operationId": "openapi",
                    "security": [],
                    "responses": {
                        "200": {"description": "OpenAPI 3 document", "content": {"application/json": {}}}
                    },
                }
            },
        },
    }
    _add_shared_errors(document["paths"])
    return document


def _add_shared_errors(paths: dict[str, Any]) -> None:
    """Answers any operation can give, listed on each so that clients (and the fuzz tests) see all of them."""
    for item in paths.values():
        for operation in item.values():
            responses = operation["responses"]
            if "application/json" in operation.get("requestBody", {}).get("content", {}):
                responses.setdefault("400", _error("malformed JSON or an invalid field"))
                responses.setdefault("413", _error("request body too large"))
                responses.setdefault("415", _error("Content-Type is not application/json"))
            responses.setdefault("500", _error("internal error (the message has the request id)"))
            responses.setdefault(
                "503", _error("a dependency is down or the disk is full; nothing was changed")
            )
