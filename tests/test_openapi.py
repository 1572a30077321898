"""/openapi.json: a valid OpenAPI 3.1 document generated from the endpoint declarations, one tag per API, and
saying what the server enforces: a request the document calls invalid is refused, one it calls valid is not
refused as malformed (the places where the two disagreed before are each checked here)."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from jsonschema import Draft202012Validator
from openapi_spec_validator import OpenAPIV31SpecValidator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.conftest import Account
from yinzi.appkeys import ENDPOINTS
from yinzi.routes.meta import api_document

CREATE = "/api/open/v1/order/create"
CALCULATE = "/api/open/v1/order/calculate"
UPLOADS = "/api/open/v1/uploads"
QUERY = "/api/open/v1/order/query"
UPLOAD_ID = "up_" + "A" * 24  # well formed, but no such upload
# Statuses that mean "this request is malformed": the document must have refused it too.
MALFORMED = {400, 415}


@pytest.fixture
def backend() -> str:
    return "sqlite"  # the subject is the document, not the database


async def served_document(client: TestClient) -> dict[str, Any]:
    resp = await client.get("/openapi.json")
    assert resp.status == 200
    document: dict[str, Any] = await resp.json()
    return document


async def test_the_document_is_openapi_3_1_with_one_tag_per_api(client: TestClient) -> None:
    document = await served_document(client)
    OpenAPIV31SpecValidator(document).validate()
    tables = client.app[ENDPOINTS]
    assert document == api_document(tables)
    apis = [table.api.name for table in tables]
    assert [tag["name"] for tag in document["tags"]] == apis and len(set(apis)) == len(apis)
    operation_ids = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert len(operation["tags"]) == 1 and operation["tags"][0] in apis, (method, path)
            operation_ids.append(operation["operationId"])
    assert len(set(operation_ids)) == len(operation_ids)
    declared = {(endpoint.method.lower(), endpoint.path) for table in tables for endpoint in table.declared}
    assert declared == {(method, path) for path, item in document["paths"].items() for method in item}


def validator(document: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    """``schema`` with its "#/components/..." references read from the document."""
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    registry = Registry().with_resource("urn:openapi", resource)
    reference = schema["$ref"] if "$ref" in schema else None
    if reference is not None:
        schema = {"$ref": "urn:openapi" + reference}
    return Draft202012Validator(
        {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}, registry=registry
    )


def body_schema(document: dict[str, Any], path: str) -> dict[str, Any]:
    schema: dict[str, Any] = document["paths"][path]["post"]["requestBody"]["content"]["application/json"][
        "schema"
    ]
    return schema


def order(stuff: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"orderType": "extract-text", "stuff": stuff, **fields}


URL = {"pathKey": "https://example.com/a.mp3"}
BODIES = [
    # an empty fileName; a mimeType that is not audio or video (415); integral floats are integers
    (UPLOADS, {"fileName": "", "mimeType": "audio/wav", "sizeBytes": 10}, False),
    (UPLOADS, {"fileName": "a.txt", "mimeType": "text/plain", "sizeBytes": 10}, False),
    (UPLOADS, {"fileName": "..", "mimeType": "audio/wav", "sizeBytes": 10}, False),
    (UPLOADS, {"fileName": "a.wav", "mimeType": "audio/wav", "sizeBytes": 10}, True),
    (UPLOADS, {"fileName": "a.wav", "mimeType": "Video/mp4", "sizeBytes": 10.0}, True),
    # durationSeconds and uploadId: exactly one of them, the other absent or null
    (CALCULATE, {"orderType": "extract-text", "durationSeconds": 5, "uploadId": UPLOAD_ID}, False),
    (CALCULATE, {"orderType": "extract-text"}, False),
    (CALCULATE, {"orderType": "extract-text", "durationSeconds": None, "uploadId": None}, False),
    (CALCULATE, {"orderType": "extract-text", "durationSeconds": 0}, False),
    (CALCULATE, {"orderType": "extract-text", "durationSeconds": 5, "uploadId": None}, True),
    (CALCULATE, {"orderType": "extract-text", "durationSeconds": None, "uploadId": UPLOAD_ID}, True),
    # callbackUrl: http(s) only, null as good as absent
    (CREATE, order(URL, callbackUrl="ftp://example.com/hook"), False),
    (CREATE, order(URL, callbackUrl="not a url"), False),
    (CREATE, order(URL, callbackUrl="https://example.com/hook"), True),
    (CREATE, order(URL, callbackUrl=None), True),
    # pathKey or uploadId, exactly one; options by order type; null options refused
    (CREATE, order({"pathKey": ""}), False),
    (CREATE, order({"pathKey": "https://example.com/a.mp3", "uploadId": UPLOAD_ID}), False),
    (CREATE, order({}), False),
    (CREATE, order({"pathKey": None, "uploadId": UPLOAD_ID}), True),
    (CREATE, order({**URL, "language": None}), False),
    (CREATE, order({**URL, "beamSize": 5.5}), False),
    (CREATE, order({**URL, "beamSize": 5.0, "language": "en"}), True),
    (CREATE, {"orderType": "track-separation", "stuff": {**URL, "language": "en"}}, False),
    (CREATE, {"orderType": "track-separation", "stuff": {**URL, "format": "flac"}}, True),
    (CREATE, order({"pathKey": "复制打开抖音 https://v.douyin.com/iAbCdEf/ 看看"}), True),
]


@pytest.mark.parametrize(("path", "body", "valid"), BODIES)
async def test_the_document_and_the_server_agree_on_bodies(
    client: TestClient, account: Account, path: str, body: dict[str, Any], valid: bool
) -> None:
    document = await served_document(client)
    assert validator(document, body_schema(document, path)).is_valid(body) == valid
    resp = await client.post(path, json=body, headers=account.headers)
    answer = await resp.json()
    assert (resp.status not in MALFORMED) == valid, answer
    assert resp.status < 500


@pytest.mark.parametrize(("order_no", "valid"), [("", False), ("  ", False), ("AbCdEfGhIjKlMnOpQr", True)])
async def test_the_document_and_the_server_agree_on_order_numbers(
    client: TestClient, account: Account, order_no: str, valid: bool
) -> None:
    document = await served_document(client)
    [parameter] = [p for p in document["paths"][QUERY]["get"]["parameters"] if p["name"] == "orderNo"]
    assert parameter["required"] and validator(document, parameter["schema"]).is_valid(order_no) == valid
    resp = await client.get(QUERY, params={"orderNo": order_no}, headers=account.headers)
    assert (resp.status not in MALFORMED) == valid, await resp.json()


async def test_complete_takes_a_null_or_absent_sha256(client: TestClient, account: Account) -> None:
    document = await served_document(client)
    schema = body_schema(document, f"{UPLOADS}/{{uploadId}}/complete")
    assert not document["paths"][f"{UPLOADS}/{{uploadId}}/complete"]["post"]["requestBody"]["required"]
    for body, valid in (({"sha256": None}, True), ({}, True), ({"sha256": "abc"}, False)):
        assert validator(document, schema).is_valid(body) == valid
        resp = await client.post(f"{UPLOADS}/{UPLOAD_ID}/complete", json=body, headers=account.headers)
        assert (resp.status not in MALFORMED) == valid, await resp.json()
    resp = await client.post(f"{UPLOADS}/{UPLOAD_ID}/complete", headers=account.headers)
    assert resp.status == 404  # no body at all: the upload is looked up


async def test_validation_runs_after_the_key_is_checked(client: TestClient) -> None:
    resp = await client.post(UPLOADS, json={"fileName": ""})
    assert (resp.status, (await resp.json())["msg"]) == (401, "API Key is required")


def test_create_documents_every_option_the_order_core_takes() -> None:
    """The options are checked in yinzi/orders.py and described in the declaration: a new option must be both."""
    from yinzi.orders import OPTIONS
    from yinzi.routes.orders import SeparationStuff, TextStuff

    sources = {"pathKey", "uploadId"}
    assert set(TextStuff.model_fields) - sources == set(OPTIONS["extract-text"])
    assert set(SeparationStuff.model_fields) - sources == set(OPTIONS["track-separation"])
