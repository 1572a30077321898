"""The one error hierarchy. Raise these anywhere in a request; the middleware turns each into the envelope
``{"code": status, "data": null, "msg": message}`` with the same HTTP status.

    YinziError(status, msg)
    ├── BadRequest            400  a field is missing, has the wrong type or a value we do not accept
    ├── Unauthorized          401  API Key is required / Invalid API Key
    ├── InsufficientBalance   402  ErrorCode.USER_BLANCE_NOT_ENOUGH (spelling is the public contract's)
    ├── Forbidden             403  a result URL whose signature is wrong or expired
    ├── NotFound              404  Order not found (also for another user's order)
    ├── Conflict              409  an Idempotency-Key whose first request is still being handled; upload state
    ├── PayloadTooLarge       413
    ├── UnsupportedMediaType  415
    ├── Unprocessable         422  an Idempotency-Key reused with a different body
    ├── TooManyRequests       429  over the key's requests per minute (with Retry-After)
    ├── ServiceUnavailable    503  a dependency (Redis) is down; nothing was created
    └── LinkFailed            502  a short-video platform answered but the link could not be resolved
                              504  ... or did not answer in time (yinzi/links/base.py)

    OrderFailed               not HTTP: ends an order ``failed`` with a reason a person can act on
    └── OrderTimedOut         ends it ``timeout``
"""

from __future__ import annotations


class YinziError(Exception):
    status = 500

    def __init__(self, msg: str, status: int | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(msg)
        self.msg = msg
        self.headers = headers or {}
        if status is not None:
            self.status = status


class BadRequest(YinziError):
    status = 400


class Unauthorized(YinziError):
    status = 401


class InsufficientBalance(YinziError):
    status = 402

    def __init__(self) -> None:
        super().__init__("ErrorCode.USER_BLANCE_NOT_ENOUGH")


class Forbidden(YinziError):
    status = 403


class NotFound(YinziError):
    status = 404


class Conflict(YinziError):
    status = 409


class PayloadTooLarge(YinziError):
    status = 413


class UnsupportedMediaType(YinziError):
    status = 415


class Unprocessable(YinziError):
    status = 422


class TooManyRequests(YinziError):
    status = 429


class ServiceUnavailable(YinziError):
    status = 503


class OrderFailed(Exception):
    """Raised inside a job: the order ends with this status and reason, and costs nothing."""

    status = "failed"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class OrderTimedOut(OrderFailed):
    status = "timeout"
