"""GET /docs: Swagger UI over /openapi.json, its files served from this machine (no CDN).

The files come from the ``openapi-ui-bundles`` package, which ships Swagger UI 5's release files (version 4
and older cannot read an OpenAPI 3.1 document).
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>yinzi API</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css">
<style>body { margin: 0 } .topbar { display: none }</style>
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
</body>
</html>
"""

# A file of its own rather than an inline script, so a strict Content-Security-Policy can allow only 'self'.
INIT_SCRIPT = """window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  tryItOutEnabled: false,
  persistAuthorization: false,
});
"""

MISSING = (
    "Swagger UI is not installed: pip install openapi-ui-bundles (it is a dependency of yinzi; "
    "reinstall with `make setup`). The API description itself is at /openapi.json."
)


def swagger_ui_dir() -> Path | None:
    try:
        from openapi_ui_bundles import swagger_ui
    except ImportError:
        return None
    return Path(swagger_ui.static_path)


async def docs_page(request: web.Request) -> web.Response:
    if swagger_ui_dir() is None:
        return web.Response(status=503, text=MISSING)
    return web.Response(text=DOCS_PAGE, content_type="text/html")


async def docs_init(request: web.Request) -> web.Response:
    return web.Response(text=INIT_SCRIPT, content_type="application/javascript")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/docs", docs_page)
    app.router.add_get("/docs/init.js", docs_init)
    folder = swagger_ui_dir()
    if folder is not None:
        app.router.add_static("/docs/static", folder)
