"""Schemathesis' stateful run over every API in the served /openapi.json: sequences that follow the documented
links (order create -> query, upload create -> state / PUT bytes / complete -> order or price), with valid and
invalid data, against a running yinzi. No answer may be a 5xx, and every answer must be one the document
declares for its operation, in the declared content type and schema.

Every table the app serves is covered, whatever ``yinzi.dialects.TABLES`` holds when the test runs: each API's
calls carry a Bearer key unless ``AUTH`` below holds that API's own way in (signed-request APIs put theirs
there), and URLs the service signs itself get their signature from ``SIGNED``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import hypothesis
import pytest
import redis.asyncio as aioredis
import schemathesis
from aiohttp import web
from aiohttp.test_utils import TestClient
from schemathesis.checks import not_a_server_error
from schemathesis.core.transport import Response
from schemathesis.generation.case import Case
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.schemas import OpenApiSchema

from tests.conftest import Account, add_account
from yinzi.accounts import NewKey, create_key
from yinzi.appkeys import DB, ENDPOINTS, SIGNER
from yinzi.dialects.abcpen import app_signature
from yinzi.settings import Settings

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Scenarios (per operation that may start one) and steps per scenario: a few hundred requests in all, enough
# to walk every link several times.
SCENARIOS_PER_ROOT = 15
STEPS = 8


@pytest.fixture
def backend() -> str:
    return "sqlite"  # the subject is the HTTP surface, not the database


@dataclass(frozen=True)
class Caller:
    """What an auth hook may use: the running app (its signer), an account with points, and a signed key pair
    of that account."""

    app: web.Application
    account: Account
    pair: NewKey


# How a call of one API authenticates: the headers and query parameters to add. Keyed by the API's tag; an API
# not listed gets ``Authorization: Bearer <key>``, which every Bearer-keyed API takes.
AuthHook = Callable[[Case, Caller], tuple[dict[str, str], dict[str, str]]]


def yinzi_signed(case: Case, caller: Caller) -> tuple[dict[str, str], dict[str, str]]:
    """yinzi's signed-request headers: X-Signature = hex HMAC-SHA256(secret, public key + "\n" + timestamp)."""
    public, timestamp = caller.pair.key, str(int(time.time()))
    assert caller.pair.secret is not None
    mac = hmac.new(caller.pair.secret.encode(), f"{public}\n{timestamp}".encode(), hashlib.sha256).hexdigest()
    return {"X-Public-Key": public, "X-Timestamp": timestamp, "X-Signature": mac}, {}


def abcpen_signed(case: Case, caller: Caller) -> tuple[dict[str, str], dict[str, str]]:
    """abcpen's headers (Base64 HMAC-SHA1 over the MD5 hex of app_id + timestamp); the body's app_id is the
    signing key, as its clients send it."""
    public, timestamp = caller.pair.key, str(int(time.time()))
    assert caller.pair.secret is not None
    if isinstance(case.body, dict):
        case.body["app_id"] = public
    return {"X-App-Key": public, "X-Timestamp": timestamp,
            "X-App-Signature": app_signature(caller.pair.secret, public, timestamp)}, {}  # fmt: skip


AUTH: dict[str, AuthHook] = {"aiesa": yinzi_signed, "abcpen": abcpen_signed}


def bearer(case: Case, caller: Caller) -> tuple[dict[str, str], dict[str, str]]:
    return {"Authorization": f"Bearer {caller.account.key}"}, {}


def signed_upload(case: Case, caller: Caller) -> tuple[dict[str, str], dict[str, str]]:
    """The signed uploadUrl's query for the upload in the path, as POST .../uploads hands it out (a link can
    carry the id, not the query string of the URL)."""
    upload_id = str((case.path_parameters or {}).get("uploadId", ""))
    path = caller.app[SIGNER].upload_path(upload_id, time.time() + 3600)
    query = dict(part.split("=", 1) for part in path.split("?", 1)[1].split("&"))
    return {}, query


# Operations that fetch from the internet what the request names (a share link): unreachable from here, they
# answer 502/504 by design; tests/test_links.py covers them with local stand-ins for the platforms.
REACHES_OUT = {"yinzi_analyze"}
# Operations (by operationId) whose URL the service signs itself, any API.
SIGNED: dict[str, AuthHook] = {"yinzi_put_bytes": signed_upload}


def scheme_parameters(document: dict[str, Any]) -> tuple[set[str], set[str]]:
    """The header and query parameters that carry credentials in any API (schemathesis would otherwise fill
    them with made-up keys): they are left to the auth hooks."""
    schemes = document.get("components", {}).get("securitySchemes", {}).values()
    headers = {s["name"].lower() for s in schemes if s["type"] == "apiKey" and s["in"] == "header"}
    return headers | {"authorization"}, {
        s["name"] for s in schemes if s["type"] == "apiKey" and s["in"] == "query"
    }


def call_kwargs(case: Case, caller: Caller) -> dict[str, Any]:
    """The credentials a call of this operation carries, by its API (or its own signed URL)."""
    operation = case.operation.definition.raw
    signed = SIGNED.get(operation.get("operationId", ""))
    if signed is not None:
        headers, params = signed(case, caller)
    elif operation.get("security") == []:
        headers, params = {}, {}
    else:
        headers, params = AUTH.get(operation["tags"][0], bearer)(case, caller)
    return {"headers": headers, "params": params, "timeout": 30}


def state_machine(schema: OpenApiSchema, caller: Caller, calls: Counter[tuple[str, int]]) -> type[Any]:
    base: type[Any] = schema.as_state_machine()
    credential_headers, credential_params = scheme_parameters(schema.raw_schema)

    class YinziStateMachine(base):  # type: ignore[misc, valid-type]
        def before_call(self, case: Case) -> None:
            if case.headers:
                for name in [name for name in case.headers if name.lower() in credential_headers]:
                    del case.headers[name]
            if case.query:
                for name in credential_params & set(case.query):
                    del case.query[name]

        def get_call_kwargs(self, case: Case) -> dict[str, Any]:
            return call_kwargs(case, caller)

        def after_call(self, response: Response, case: Case) -> None:
            super().after_call(response, case)
            calls[case.operation.definition.raw["operationId"], response.status_code] += 1

        def validate_response(self, response: Response, case: Case, **kwargs: Any) -> None:
            case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs)

    return YinziStateMachine


@pytest.fixture
async def served(
    make_client: Callable[[Settings], Any], settings: Settings, redis_url: str, queue_name: str
) -> AsyncIterator[TestClient]:
    """yinzi on loopback with the Redis queue and no worker: orders stay queued, so nothing is fetched from
    the made-up URLs the run sends. The queue's keys go afterwards."""
    client: TestClient = await make_client(
        settings.replace(redis_url=redis_url, queue_name=queue_name, rate_limit=0)
    )
    yield client
    redis = aioredis.from_url(redis_url)
    try:
        jobs = await redis.zrange(queue_name, 0, -1)
        await redis.delete(queue_name, *(b"arq:job:" + job for job in jobs))
    finally:
        await redis.aclose()


async def test_stateful_run_over_every_api(served: TestClient) -> None:
    app = served.app
    account = await add_account(app[DB], points=10**9)
    user = await app[DB].user_by_name(account.name)
    assert user is not None
    caller = Caller(app, account, await create_key(app[DB], user, signer=app[SIGNER]))
    url = str(served.make_url("/openapi.json"))
    calls: Counter[tuple[str, int]] = Counter()
    linked: set[str] = set()
    offered: set[str] = set()  # the operations schemathesis generates requests for (not /openapi.json itself)

    def run() -> None:
        schema = schemathesis.openapi.from_url(url)
        assert [tag["name"] for tag in schema.raw_schema["tags"]] == [t.api.name for t in app[ENDPOINTS]]
        for item in schema.raw_schema["paths"].values():
            for operation in item.values():
                for answer in operation["responses"].values():
                    for declared in answer.get("links", {}).values():
                        linked.update((operation["operationId"], declared["operationId"]))
        machine = state_machine(schema, caller, calls)
        machine.run(
            settings=hypothesis.settings(
                max_examples=SCENARIOS_PER_ROOT * len(machine.root_rules),
                stateful_step_count=STEPS,
                deadline=None,
                derandomize=True,  # the same sequences every run; raise the bounds locally to search wider
                database=None,
                suppress_health_check=list(hypothesis.HealthCheck),
            )
        )

    def unstarted() -> None:
        """Operations the run never called (schemathesis starts scenarios only where it expects success:
        a create whose body names an id of a resource nothing produces, like abcpen's app_id, is not a start)
        are each tried alone, with the same checks."""
        schema = schemathesis.openapi.from_url(url)
        credentials = scheme_parameters(schema.raw_schema)[0]
        for result in schema.get_all_operations():
            operation = result.ok()
            offered.add(operation.definition.raw["operationId"])
            if operation.definition.raw["operationId"] in {called for called, _ in calls} | REACHES_OUT:
                continue

            @hypothesis.settings(max_examples=SCENARIOS_PER_ROOT, deadline=None, derandomize=True, database=None,
                                 suppress_health_check=list(hypothesis.HealthCheck))  # fmt: skip
            @hypothesis.given(case=operation.as_strategy())
            def alone(case: Case) -> None:
                kwargs = call_kwargs(case, caller)
                headers = {k: v for k, v in (case.headers or {}).items() if k.lower() not in credentials}
                case.headers = headers
                response = case.call(**kwargs)
                calls[case.operation.definition.raw["operationId"], response.status_code] += 1
                case.validate_response(response, checks=CHECKS)

            alone()

    # The runs are synchronous (requests); the server answers on this event loop meanwhile.
    await asyncio.to_thread(run)
    await asyncio.to_thread(unstarted)
    called = {operation for operation, _ in calls}
    assert linked <= called, f"never called: {sorted(linked - called)}"
    assert called == offered - REACHES_OUT
    # Every API was reached past its door (authenticated and valid at least once), not only refused.
    for table in app[ENDPOINTS]:
        answered = {status for (operation, status) in calls if operation.startswith(f"{table.api.name}_")}
        assert any(status < 300 for status in answered), (table.api.name, sorted(answered))
    # The links were followed with what the answers carried, not only with made-up values.
    for operation in ("yinzi_query_order", "yinzi_upload_state", "yinzi_put_bytes"):
        assert calls[operation, 200], (operation, sorted(calls.items()))
