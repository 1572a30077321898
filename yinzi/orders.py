"""Orders as the public API sees them: validating a create request and shaping a query answer.

Plain functions over plain data: no aiohttp, no SQL, so the rules are easy to read and test.
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any
from urllib.parse import unquote, urlsplit

from yinzi.envelope import reject_unknown
from yinzi.errors import BadRequest
from yinzi.fetch import LOCAL_FILE_HINT, AddressPolicy, BlockedAddress
from yinzi.links import is_single_url, link_in
from yinzi.pricing import PRIORITIES
from yinzi.settings import ORDER_TYPES
from yinzi.store import Order
from yinzi.uploads import MAX_FILE_NAME

ORDER_NO_ALPHABET = string.ascii_letters + string.digits
ORDER_NO_LENGTH = 18  # 107 random bits: unguessable
MAX_URL_LENGTH = 4096
UPLOAD_ID = re.compile(r"up_[A-Za-z0-9_-]{16,64}")

CREATE_FIELDS = frozenset({"orderType", "stuff", "priority", "callbackUrl"})
CALCULATE_FIELDS = frozenset({"orderType", "durationSeconds", "uploadId", "priority"})


OUTPUT_FORMATS = ("mp3", "wav", "flac")
CHINESE_SCRIPTS = ("simplified", "traditional")
# Whisper's tasks: write down what is said, or translate it into English.
WHISPER_TASKS = ("transcribe", "translate")
MAX_PROMPT_CHARS = 1000
# Model names become file names in the model directory: no separators, no leading dot.
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# The languages Whisper knows (whisper.tokenizer.LANGUAGES), kept here so the API never imports torch.
WHISPER_LANGUAGES = frozenset(
    "af am ar as az ba be bg bn bo br bs ca cs cy da de el en es et eu fa fi fo fr gl gu ha haw he hi hr ht hu "
    "hy id is it ja jw ka kk km kn ko la lb ln lo lt lv mg mi mk ml mn mr ms mt my ne nl nn no oc pa pl ps pt ro "
    "ru sa sd si sk sl sn so sq sr su sv sw ta te tg th tk tl tr tt uk ur uz vi yi yo yue zh".split()
)


def _one_of(choices: tuple[str, ...]) -> Callable[[str, Any], None]:
    def check(name: str, value: Any) -> None:
        if value not in choices:
            raise BadRequest(f"stuff.{name} must be one of: {', '.join(choices)}")

    return check


def _language(name: str, value: Any) -> None:
    if not isinstance(value, str) or value.lower() not in WHISPER_LANGUAGES:
        raise BadRequest(f"stuff.{name} must be a language code Whisper knows, such as en, zh or ja")


def _prompt(name: str, value: Any) -> None:
    if not isinstance(value, str) or len(value) > MAX_PROMPT_CHARS:
        raise BadRequest(f"stuff.{name} must be a string of at most {MAX_PROMPT_CHARS} characters")


def _model(name: str, value: Any) -> None:
    if not isinstance(value, str) or not MODEL_NAME.fullmatch(value):
        raise BadRequest(f"stuff.{name} must be a model name such as small or large-v3")


def _boolean(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise BadRequest(f"stuff.{name} must be true or false")


def _number(low: float, high: float, integer: bool = True) -> Callable[[str, Any], None]:
    def check(name: str, value: Any) -> None:
        # JSON has one number type: 5.0 is the integer 5 (as JSON Schema's "integer" says), 5.5 is not.
        whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        kinds = whole if integer else isinstance(value, int | float)
        if isinstance(value, bool) or not kinds or not low <= value <= high:
            kind = "an integer" if integer else "a number"
            raise BadRequest(f"stuff.{name} must be {kind} from {low:g} to {high:g}")

    return check


# extract-text's numeric options: (lowest, highest, whole numbers only), shared with the OpenAPI document.
TEXT_NUMBERS: dict[str, tuple[float, float, bool]] = {
    "beamSize": (1, 10, True),
    "temperature": (0, 1, False),
    "speakers": (1, 20, True),
    "maxLineChars": (8, 200, True),
    "maxLines": (1, 5, True),
    "maxCaptionSeconds": (1, 30, False),
}
WHOLE_NUMBERS = frozenset(name for name, (_, _, whole) in TEXT_NUMBERS.items() if whole)
TEXT_FLAGS = ("vad", "diarize", "splitChannels")

# ---- transcript reports and AI analysis (workers/reports.py, workers/analysis.py) ----
REPORT_FORMATS = ("pdf",)
MAX_AI_PROMPT_CHARS = 4000
MAX_FILE_NAME_CHARS = MAX_FILE_NAME  # the same limit as an upload session's fileName


def _text(limit: int) -> Callable[[str, Any], None]:
    def check(name: str, value: Any) -> None:
        if not isinstance(value, str) or not value.strip() or len(value) > limit:
            raise BadRequest(f"stuff.{name} must be a non-empty string of at most {limit} characters")

    return check


def url_file_name(url: str) -> str | None:
    """The last segment of a URL's path, decoded: what a browser would save the file as."""
    name = unquote(urlsplit(url).path.rstrip("/").rpartition("/")[2]).strip()
    return name[:MAX_FILE_NAME_CHARS] or None


SEPARATION_OPTIONS = {"format": _one_of(OUTPUT_FORMATS)}
OPTIONS: dict[str, dict[str, Callable[[str, Any], None]]] = {
    "track-separation": SEPARATION_OPTIONS,
    "extract-voice": SEPARATION_OPTIONS,
    "extract-music": SEPARATION_OPTIONS,
    "extract-text": {
        "language": _language,
        "prompt": _prompt,
        "model": _model,
        "chinese": _one_of(CHINESE_SCRIPTS),
        "task": _one_of(WHISPER_TASKS),
        **{name: _number(*limits) for name, limits in TEXT_NUMBERS.items()},
        **dict.fromkeys(TEXT_FLAGS, _boolean),
        "report": _one_of(REPORT_FORMATS),
        "aiPrompt": _text(MAX_AI_PROMPT_CHARS),
        "fileName": _text(MAX_FILE_NAME_CHARS),
    },
}


# An order's own input limits, tighter than the service's (YINZI_MAX_DOWNLOAD_BYTES, YINZI_MAX_DURATION): an API
# whose contract promises smaller ones puts them in stuff (with_input_limits); the job enforces them when it
# fetches and probes the input (workers/jobs.py), and engines never see them.
MAX_INPUT_BYTES = "maxInputBytes"
MAX_INPUT_SECONDS = "maxInputSeconds"
INPUT_LIMITS = (MAX_INPUT_BYTES, MAX_INPUT_SECONDS)


@dataclass(frozen=True)
class OrderRequest:
    order_type: str
    stuff: dict[str, Any]  # pathKey (a URL) or uploadId, and the order type's options
    priority: str
    callback_url: str | None

    @property
    def upload_id(self) -> str | None:
        value = self.stuff.get("uploadId")
        return value if isinstance(value, str) else None

    def with_input_limits(self, max_bytes: int, max_seconds: int) -> OrderRequest:
        """This order, refusing (failed, at no cost) an input larger or longer than these."""
        return replace(self, stuff={**self.stuff, MAX_INPUT_BYTES: max_bytes, MAX_INPUT_SECONDS: max_seconds})


@dataclass(frozen=True)
class PriceRequest:
    order_type: str
    priority: str
    duration: float | None  # None: take it from the upload
    upload_id: str | None


def new_order_no() -> str:
    # One draw of 107 random bits in base 62 (62^18 > 2^107), padded to the fixed length.
    n = secrets.randbits(107)
    digits = []
    for _ in range(ORDER_NO_LENGTH):
        n, digit = divmod(n, 62)
        digits.append(ORDER_NO_ALPHABET[digit])
    return "".join(digits)


def _order_type(body: dict[str, Any]) -> str:
    order_type = body.get("orderType")
    if order_type is None:
        raise BadRequest("orderType is required")
    if not isinstance(order_type, str):
        raise BadRequest("orderType must be a string")
    if order_type not in ORDER_TYPES:
        raise BadRequest(f"orderType must be one of: {', '.join(ORDER_TYPES)}")
    return order_type


def _priority(body: dict[str, Any]) -> str:
    priority = body.get("priority", "queue")
    if priority not in PRIORITIES:
        raise BadRequest(f"priority must be one of: {', '.join(PRIORITIES)}")
    return str(priority)


def _upload_id(value: Any, field: str) -> str:
    if not isinstance(value, str) or not UPLOAD_ID.fullmatch(value):
        raise BadRequest(f"{field} must be an upload id from POST /api/open/v1/uploads")
    return value


def checked_url(value: Any, field: str, policy: AddressPolicy, hint: str = "") -> str:
    """``value`` if it is an http(s) URL this service may fetch; else 400 naming ``field``."""
    if not isinstance(value, str):
        raise BadRequest(f"{field} must be a string")
    if len(value) > MAX_URL_LENGTH:
        raise BadRequest(f"{field} is longer than {MAX_URL_LENGTH} characters")
    try:
        policy.check_url(value)
    except BlockedAddress as exc:
        raise BadRequest(f"{field}: {exc}{hint}") from None
    except ValueError:
        raise BadRequest(f"{field} must be an http or https URL") from None
    return value


def parse_create(body: dict[str, Any], policy: AddressPolicy) -> OrderRequest:
    reject_unknown(body, CREATE_FIELDS)
    order_type = _order_type(body)
    priority = _priority(body)
    callback_url = body.get("callbackUrl")
    if callback_url is not None:
        callback_url = checked_url(
            callback_url.strip() if isinstance(callback_url, str) else callback_url, "callbackUrl", policy
        )
    stuff = body.get("stuff")
    if stuff is None:
        raise BadRequest("pathKey is required")
    if not isinstance(stuff, dict):
        raise BadRequest("stuff must be an object")
    options = OPTIONS[order_type]
    reject_unknown(stuff, frozenset({"pathKey", "uploadId", *options}), "stuff.")
    for name, check in options.items():
        if name in stuff:
            check(name, stuff[name])
    stuff = {**stuff, **{name: int(stuff[name]) for name in WHOLE_NUMBERS if name in stuff}}  # 5.0 -> 5
    request = partial(OrderRequest, order_type, priority=priority, callback_url=callback_url)
    path_key = stuff.get("pathKey")
    if "uploadId" in stuff:
        if path_key is not None:
            raise BadRequest("stuff takes pathKey or uploadId, not both")
        return request({**stuff, "uploadId": _upload_id(stuff["uploadId"], "stuff.uploadId")})
    if path_key is None or path_key == "":
        raise BadRequest("pathKey is required")
    if not isinstance(path_key, str):
        raise BadRequest("stuff.pathKey must be a string")
    if len(path_key) > MAX_URL_LENGTH:
        raise BadRequest(f"stuff.pathKey is longer than {MAX_URL_LENGTH} characters")
    path_key = path_key.strip()
    if not is_single_url(path_key):  # a pasted share text: the link inside it
        link = link_in(path_key)
        if link is None:
            raise BadRequest("stuff.pathKey must be an http or https URL, or a share text containing one")
        path_key = str(link)
    return request(
        {**stuff, "pathKey": checked_url(path_key, "stuff.pathKey", policy, f" ({LOCAL_FILE_HINT})")}
    )


def parse_calculate(body: dict[str, Any], max_duration: int) -> PriceRequest:
    reject_unknown(body, CALCULATE_FIELDS)
    order_type = _order_type(body)
    priority = _priority(body)
    duration = body.get("durationSeconds")
    upload_id = body.get("uploadId")
    if (duration is None) == (upload_id is None):
        raise BadRequest("give durationSeconds or uploadId (one of them)")
    if upload_id is not None:
        return PriceRequest(order_type, priority, None, _upload_id(upload_id, "uploadId"))
    if (
        isinstance(duration, bool)
        or not isinstance(duration, int | float)
        or not 0 < duration <= max_duration
    ):
        raise BadRequest(f"durationSeconds must be a number of seconds above 0 and at most {max_duration}")
    return PriceRequest(order_type, priority, float(duration), None)


def created_view(order_no: str, order: OrderRequest) -> dict[str, Any]:
    return {
        "orderNo": order_no,
        "orderType": order.order_type,
        "orderStatus": "pending",
        "payStatus": "waiting",
        "messageId": order_no,  # the queue's job id is the order number
        "priority": order.priority,
    }


def query_view(order: Order, balance: int, file_url: Callable[[str], str]) -> dict[str, Any]:
    """The seed's fields plus payStatus, progress and priority. Files are listed only once the order is paid,
    and only until they expire; an order whose results expired unpaid costs nothing."""
    paid = order.status == "finish" and order.pay_status == "paid" and not order.expired
    charged = order.status == "finish" and (order.pay_status == "paid" or not order.expired)
    return {
        "orderNo": order.order_no,
        "orderType": order.order_type,
        "status": order.status,
        "payStatus": order.pay_status,
        # An ended order has nothing more to do, whatever its status: a failed one must not look stuck at 5.
        "progress": 100 if order.terminal else order.progress,
        "cost": order.cost if charged else 0,
        "reason": order.reason,
        "stuffs": [{"name": r.name, "business": r.business, "url": file_url(r.name)} for r in order.results]
        if paid
        else [],
        "balance": balance,
        "priority": order.priority,
    }
