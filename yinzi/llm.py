"""The operator's language model: any OpenAI-compatible chat-completions API (``YINZI_LLM_URL``: Ollama, vLLM, a
hosted one). Two calls: the models it lists (``GET <url>/models``) and one chat completion (``POST
<url>/chat/completions``). Every failure becomes :class:`LlmError` with a sentence a person can act on; callers
decide whether that fails anything (AI analysis never fails a transcription).

The URL is the operator's, not a customer's, so it is not held to the fetch rules for customers' media URLs: a
model on loopback or the local network is the usual case.
"""

from __future__ import annotations

import json
from types import TracebackType
from typing import Any

import aiohttp

from yinzi.settings import Settings

NOT_CONFIGURED = "no language model is configured on this server (the operator sets YINZI_LLM_URL)"
# How much of a failing answer's body a message quotes.
QUOTED_BODY_CHARS = 200


class LlmError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


Message = dict[str, str]


class LlmClient:
    """One session with the endpoint: ``async with LlmClient.for_settings(settings) as llm: ...``."""

    def __init__(self, url: str, api_key: str | None, timeout: float, model: str | None = None) -> None:
        self.url = url.rstrip("/")
        self._api_key = api_key
        self._timeout = timeout
        self._model = model
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def for_settings(cls, settings: Settings) -> LlmClient:
        if not settings.llm_url:
            raise LlmError(NOT_CONFIGURED)
        return cls(settings.llm_url, settings.llm_api_key, settings.llm_timeout, settings.llm_model)

    async def __aenter__(self) -> LlmClient:
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        self._session = aiohttp.ClientSession(
            headers=headers, timeout=aiohttp.ClientTimeout(total=self._timeout)
        )
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()

    async def models(self) -> list[dict[str, Any]]:
        """The endpoint's models, as it lists them (each has at least an ``id``)."""
        body = await self._call("GET", "/models", None)
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise LlmError(f"the language model at {self.url} answered /models without a list of models")
        return [m for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]

    async def model(self) -> str:
        """The configured model, or else the first one the endpoint lists."""
        if self._model is None:
            listed = await self.models()
            if not listed:
                raise LlmError(f"the language model at {self.url} lists no models: set YINZI_LLM_MODEL")
            self._model = str(listed[0]["id"])
        return self._model

    async def complete(self, messages: list[Message]) -> str:
        """The assistant's answer to ``messages``."""
        body = await self._call(
            "POST", "/chat/completions", {"model": await self.model(), "messages": messages, "stream": False}
        )
        try:
            content = body["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            content = None
        if not isinstance(content, str) or not content.strip():
            raise LlmError(f"the language model at {self.url} answered without a completion")
        return content.strip()

    async def _call(self, method: str, path: str, payload: dict[str, Any] | None) -> Any:
        assert self._session is not None, "use LlmClient in an async with block"
        try:
            async with self._session.request(method, self.url + path, json=payload) as response:
                text = await response.text(errors="replace")
                if response.status >= 400:
                    raise LlmError(
                        f"the language model at {self.url} answered HTTP {response.status}: "
                        f"{' '.join(text.split())[:QUOTED_BODY_CHARS]}"
                    )
        except TimeoutError:
            raise LlmError(
                f"the language model at {self.url} did not answer within {self._timeout:g} s "
                "(YINZI_LLM_TIMEOUT)"
            ) from None
        except aiohttp.ClientError as exc:
            raise LlmError(f"the language model at {self.url} could not be reached: {exc}") from None
        try:
            return json.loads(text)
        except ValueError:
            raise LlmError(
                f"the language model at {self.url} answered {path} with something not JSON"
            ) from None


async def list_models(settings: Settings) -> list[dict[str, Any]]:
    async with LlmClient.for_settings(settings) as llm:
        return await llm.models()
