"""GET /docs: Swagger UI over /openapi.json, every file from this server (the browser test renders it)."""

from __future__ import annotations

import re

import pytest
from aiohttp.test_utils import TestClient


@pytest.fixture
def backend() -> str:
    return "sqlite"  # the subject here is the docs page, not the database


async def test_docs_page_loads_everything_from_this_server(client: TestClient) -> None:
    resp = await client.get("/docs")
    page = await resp.text()
    assert resp.status == 200 and resp.content_type == "text/html"
    assert not re.search(r"(src|href)=\"(https?:)?//", page), "no CDN: every file is served here"
    for src in re.findall(r"(?:src|href)=\"([^\"]+)\"", page):
        asset = await client.get(src)
        assert asset.status == 200 and len(await asset.read()) > 100, src
    init = await (await client.get("/docs/init.js")).text()
    assert '"/openapi.json"' in init
