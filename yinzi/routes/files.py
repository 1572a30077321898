"""GET /files/{orderNo}/{name}: result files behind signed, expiring URLs."""

from __future__ import annotations

from aiohttp import web

from yinzi.appkeys import DB, SETTINGS, SIGNER
from yinzi.errors import NotFound

routes = web.RouteTableDef()


@routes.get("/files/{order_no}/{name}")
async def result_file(request: web.Request) -> web.StreamResponse:
    order_no = request.match_info["order_no"]
    name = request.match_info["name"]
    request.app[SIGNER].verify(order_no, name, request.query.get("expires", ""), request.query.get("sig", ""))
    order = await request.app[DB].order(order_no)
    # Only names the order itself lists are served, so no path can be smuggled in through {name}.
    if order is None or name not in {r.name for r in order.results}:
        raise NotFound("file not found")
    path = request.app[SETTINGS].results_dir / order_no / name
    if not path.is_file():
        raise NotFound("file not found: the results have been deleted")
    return web.FileResponse(path, headers={"Content-Disposition": f'attachment; filename="{name}"'})
