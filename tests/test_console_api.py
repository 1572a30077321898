"""The console's own JSON answers: who may see what."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from tests.conftest import Account, add_account
from yinzi.appkeys import DB, SETTINGS
from yinzi.console import operators


async def test_operator_answers_need_an_operator_token(client: TestClient, account: Account) -> None:
    for path in ("users", "keys", "queue", "engines", "failures"):
        resp = await client.get(f"/console/api/admin/{path}", headers=account.headers)  # a user's key
        assert resp.status == 401 and "yinzi operators create" in (await resp.json())["msg"]
    token = operators.create(client.app[SETTINGS].data_dir, "ops")
    resp = await client.get("/console/api/admin/users", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 200 and account.name in {u["name"] for u in (await resp.json())["data"]}
    assert operators.revoke(client.app[SETTINGS].data_dir, "ops")
    resp = await client.get("/console/api/admin/users", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 401


async def test_users_see_and_revoke_only_their_own(client: TestClient, account: Account) -> None:
    other = await add_account(client.app[DB])
    other_prefix = other.key[:11]
    resp = await client.post(f"/console/api/me/keys/{other_prefix}/revoke", headers=account.headers)
    assert resp.status == 404
    me = (await (await client.get("/console/api/me", headers=account.headers)).json())["data"]
    assert [k["prefix"] for k in me["keys"]] == [account.key[:11]] and me["balance"] == 1000
    resp = await client.get("/console/api/orders/nope", headers=account.headers)
    assert resp.status == 404


async def test_console_page_is_served(client: TestClient) -> None:
    resp = await client.get("/")
    assert resp.status == 200 and "app.js" in await resp.text()
    assert (await client.get("/console/static/app.js")).status == 200
