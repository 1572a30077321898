"""A local stand-in for an OpenAI-compatible language model server (Ollama, vLLM, a hosted one): ``GET /v1/models``
and ``POST /v1/chat/completions`` as the protocol has them. It records every request and answers each completion
with ``answer <n>`` (n counts the completions), or fails every request with ``fail_status``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

MODEL = "stand-in-llm"


@dataclass
class StandInLlm:
    models: list[str] = field(default_factory=lambda: [MODEL])
    fail_status: int | None = None
    completions: list[dict[str, Any]] = field(default_factory=list)  # request bodies, in order
    authorizations: list[str | None] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._complete)
        return app

    def _failure(self, request: web.Request) -> web.Response | None:
        self.authorizations.append(request.headers.get("Authorization"))
        if self.fail_status is None:
            return None
        return web.json_response({"error": {"message": "the model crashed"}}, status=self.fail_status)

    async def _models(self, request: web.Request) -> web.Response:
        failed = self._failure(request)
        if failed is not None:
            return failed
        return web.json_response(
            {
                "object": "list",
                "data": [{"id": m, "object": "model", "owned_by": "tests"} for m in self.models],
            }
        )

    async def _complete(self, request: web.Request) -> web.Response:
        failed = self._failure(request)
        if failed is not None:
            return failed
        body = await request.json()
        self.completions.append(body)
        answer = f"answer {len(self.completions)}"
        return web.json_response(
            {
                "id": f"chatcmpl-{len(self.completions)}",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}
                ],
            }
        )

    def user_messages(self) -> list[str]:
        return [str(body["messages"][-1]["content"]) for body in self.completions]
