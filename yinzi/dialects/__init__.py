"""Other vendors' APIs, each a thin door onto the one order core (yinzi/service.py, yinzi/uploads.py).

One module per API: its pydantic request and response shapes, its error shape, its routes (declared through
yinzi/declare.py, so they are validated and documented in /openapi.json under the API's tag) and, where it
calls back, its callback style (yinzi/callbacks.py). A client written for that vendor works against yinzi by
changing only its base URL and key. Importing this package registers every API's callback style.
"""

from __future__ import annotations

from yinzi.declare import Endpoints
from yinzi.dialects import abcpen, aiesa, bella, openai_audio, orpheus

TABLES: list[Endpoints] = [
    openai_audio.endpoints,
    orpheus.endpoints,
    bella.endpoints,
    abcpen.endpoints,
    aiesa.endpoints,
]
