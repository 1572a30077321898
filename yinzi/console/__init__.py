"""The faces for people: the API docs page (/docs) and the web console (/).

No business rules live here: pages call the same order core and the same API endpoints as every client.
"""

from __future__ import annotations

# Paths of pages and their files, which /openapi.json (the API's description) leaves out.
PAGE_PREFIXES = ("/docs", "/console")


def is_page(path: str) -> bool:
    return path == "/" or path.startswith(PAGE_PREFIXES)
