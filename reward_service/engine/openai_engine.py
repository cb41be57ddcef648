"""An engine on a remote OpenAI-compatible completions server that takes token-id prompts.

Lets the judge share a vLLM (or SGLang) deployment that something else runs. Prompts go as token
ids, and vLLM's `return_token_ids` / `return_tokens_as_token_ids` extensions bring ids back, so
the budget-forced verdict can continue exactly the sequence the model produced.

A generation with a deadline (`SamplingSpec.end_by`) is streamed: what arrives is kept, and at the
deadline the stream is closed, which aborts the request on a vLLM server (it drops a request whose
client left), and the generation so far is returned with finish reason "deadline".
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from reward_service.engine.base import PROBE_PROMPT, PROBE_SPEC, Generation, SamplingSpec
from reward_service.engine.results import PositionLogprobs, display_model_name, finish_reason
from reward_service.errors import EngineTimeout, InvalidInput, Unavailable
from reward_service.settings import EngineSettings

TOKEN_ID_PREFIX = "token_id:"


class OpenAIEngine:
    """`Engine` over HTTP: `POST {base_url}/completions`, one request per generation (streamed
    when it has a deadline).

    Cancelling `generate` closes the HTTP request; vLLM aborts a request whose client left.
    """

    def __init__(
        self,
        settings: EngineSettings,
        model: str,
        *,
        ready_timeout_s: float = 600.0,
    ) -> None:
        if not settings.base_url:
            raise ValueError("the openai engine needs settings.engine.base_url")
        self._settings = settings
        self._base_url = settings.base_url.rstrip("/")
        # The name sent as `model`: what the server serves.
        self._model = settings.served_model_name or model
        self._model_id = display_model_name(settings.served_model_name, model)
        self._ready_timeout_s = ready_timeout_s
        headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
        self._client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(settings.request_timeout_s, connect=10.0),
            # The worker bounds concurrency; a pool limit here would only add a second queue.
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=256),
        )

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def supports_seed(self) -> bool:
        return self._settings.per_request_seed

    @property
    def health_url(self) -> str:
        """vLLM and SGLang serve /health at the root, beside the /v1 API."""
        root = self._base_url.removesuffix("/v1")
        return f"{root}/health"

    async def start(self) -> None:
        """Wait (bounded) for the server, then prove it serves the model and returns token ids."""
        deadline = time.monotonic() + self._ready_timeout_s
        while True:
            try:
                await self._healthy()
                break
            except Unavailable as exc:
                if time.monotonic() >= deadline:
                    raise Unavailable(
                        f"not healthy after {self._ready_timeout_s:.0f} s ({exc})"
                    ) from exc
            await asyncio.sleep(0.5)
        # A short generation doubles as warm-up and as a check that the server knows the model
        # name and returns token ids (`_to_generation` raises otherwise).
        await self.recover()

    async def check(self) -> None:
        """The server's /health: answered at once however busy the server is (a probe
        generation would queue behind its work); vLLM's fails when its engine core is dead."""
        await self._healthy()

    async def recover(self) -> None:
        """A remote server restarts under its own supervisor: recovering is seeing it healthy
        and serving the model again (a fresh server answers a 1-token generation at once)."""
        await self._healthy()
        await self.generate(PROBE_PROMPT, PROBE_SPEC, f"rrm-probe-{uuid.uuid4().hex[:8]}")

    async def _healthy(self) -> None:
        try:
            response = await self._client.get(self.health_url, timeout=5.0)
        except httpx.HTTPError as exc:
            raise Unavailable(f"{self.health_url}: {type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            raise Unavailable(f"{self.health_url}: HTTP {response.status_code}")

    async def close(self) -> None:
        await self._client.aclose()

    async def generate(
        self, prompt_ids: Sequence[int], spec: SamplingSpec, request_id: str
    ) -> Generation:
        body = self._request_body(prompt_ids, spec, request_id)
        if spec.end_by is None:
            return await self._complete(body, request_id, len(prompt_ids))
        if time.time() >= spec.end_by:
            return Generation((), "", "deadline", prompt_tokens=len(prompt_ids))
        return await self._stream(body, request_id, len(prompt_ids), spec.end_by)

    async def _complete(self, body: dict[str, Any], request_id: str, prompt_len: int) -> Generation:
        url = f"{self._base_url}/completions"
        try:
            response = await self._client.post(url, json=body)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, url, request_id) from exc
        _raise_for_status(response, url)
        return _to_generation(response.json(), request_id, prompt_len)

    async def _stream(
        self, body: dict[str, Any], request_id: str, prompt_len: int, end_by: float
    ) -> Generation:
        """The completion streamed until it ends or `end_by`: then the stream is closed (the
        server aborts the request) and what arrived is the generation, finish reason
        "deadline". Its cached prompt tokens are unknown then (the server reports them last)."""
        url = f"{self._base_url}/completions"
        body = {**body, "stream": True, "stream_options": {"include_usage": True}}
        received = _StreamedCompletion(request_id, prompt_len)
        try:
            async with (
                asyncio.timeout_at(_loop_time(end_by)),
                self._client.stream("POST", url, json=body) as response,
            ):
                if response.status_code >= 400:
                    await response.aread()
                    _raise_for_status(response, url)
                async for line in response.aiter_lines():
                    received.feed(line)
        except TimeoutError:
            return received.generation(cut=True)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, url, request_id) from exc
        return received.generation(cut=False)

    def _transport_error(self, exc: httpx.HTTPError, url: str, request_id: str) -> Exception:
        if isinstance(exc, httpx.TimeoutException):
            return EngineTimeout(
                f"{url}: no answer within {self._settings.request_timeout_s:.0f} s "
                f"for request {request_id}"
            )
        return Unavailable(f"{url}: {type(exc).__name__}: {exc}")

    def _request_body(
        self, prompt_ids: Sequence[int], spec: SamplingSpec, request_id: str
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self._model,
            "prompt": list(prompt_ids),
            "max_tokens": spec.max_tokens,
            "temperature": spec.temperature,
            "top_p": spec.top_p,
            "stop": list(spec.stop),
            "stream": False,
            "request_id": request_id,
            # vLLM extensions: generated ids in `token_ids`, logprob keys as "token_id:123".
            "return_token_ids": True,
            "return_tokens_as_token_ids": True,
        }
        if spec.logprobs is not None:
            body["logprobs"] = spec.logprobs
        if spec.seed is not None:
            if not self.supports_seed:
                raise InvalidInput("seed", "this engine does not honour per-request seeds")
            body["seed"] = spec.seed
        return body


def _loop_time(wall_clock: float) -> float:
    """`wall_clock` (time.time()) on the event loop's clock."""
    return asyncio.get_running_loop().time() + (wall_clock - time.time())


def _raise_for_status(response: httpx.Response, url: str) -> None:
    if response.status_code < 400:
        return
    detail = _error_message(response)
    if response.status_code in (400, 422):
        raise InvalidInput("prompt_ids", f"{url} rejected the request: {detail}")
    raise Unavailable(f"{url}: HTTP {response.status_code}: {detail}")


def _error_message(response: httpx.Response) -> str:
    try:
        payload = response.json()
    except ValueError:
        return response.text[:500]
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict) and "message" in error:
        return str(error["message"])
    return str(payload)[:500]


def _token_id(key: str) -> int:
    if not key.startswith(TOKEN_ID_PREFIX):
        raise Unavailable(
            f"logprob key {key!r} is not a token id: the server ignored return_tokens_as_token_ids"
        )
    return int(key.removeprefix(TOKEN_ID_PREFIX))


def _to_generation(payload: Mapping[str, Any], request_id: str, prompt_len: int) -> Generation:
    choice = payload["choices"][0]
    logprobs_block = choice.get("logprobs")
    token_ids = choice.get("token_ids")
    if token_ids is None and logprobs_block is not None:
        # Servers without return_token_ids still name sampled tokens by id in the logprobs.
        token_ids = [_token_id(token) for token in logprobs_block["tokens"]]
    if token_ids is None:
        raise _no_token_ids()
    usage = payload.get("usage") or {}
    details = usage.get("prompt_tokens_details") or {}
    return Generation(
        token_ids=tuple(int(t) for t in token_ids),
        text=choice["text"],
        finish_reason=finish_reason(choice.get("finish_reason"), request_id),
        prompt_tokens=int(usage.get("prompt_tokens", prompt_len)),
        logprobs=None if logprobs_block is None else _positions(logprobs_block["top_logprobs"]),
        cached_prompt_tokens=int(details.get("cached_tokens") or 0),
    )


def _positions(top: list[Mapping[str, Any] | None]) -> PositionLogprobs:
    """The server's per-position top logprobs ("token_id:N" keys), converted where read."""
    return PositionLogprobs(
        len(top), lambda i: {_token_id(key): float(value) for key, value in (top[i] or {}).items()}
    )


def _no_token_ids() -> Unavailable:
    return Unavailable(
        "the completions server returned no token ids; it must support vLLM's "
        "return_token_ids (or return_tokens_as_token_ids with logprobs)"
    )


class _StreamedCompletion:
    """A streamed completion's chunks ("data: {...}" server-sent events), accumulated: the
    text, token ids and per-token logprobs generated so far, and the usage that ends the stream.
    """

    def __init__(self, request_id: str, prompt_len: int) -> None:
        self._request_id, self._prompt_len = request_id, prompt_len
        self._text: list[str] = []
        self._token_ids: list[int] = []
        self._top: list[Mapping[str, Any] | None] | None = None
        self._finish: str | None = None
        self._usage: Mapping[str, Any] = {}

    def feed(self, line: str) -> None:
        if not line.startswith("data:"):
            return  # blank separators, comments, other SSE fields
        data = line.removeprefix("data:").strip()
        if data == "[DONE]":
            return
        payload = json.loads(data)
        if "error" in payload:
            error = payload["error"]
            message = error.get("message", error) if isinstance(error, dict) else error
            raise Unavailable(f"request {self._request_id} failed on the server: {message}")
        self._usage = payload.get("usage") or self._usage
        for choice in payload.get("choices") or ():
            if choice.get("index", 0) == 0:  # one prompt, n=1: anything else is not ours
                self._add(choice)

    def _add(self, choice: Mapping[str, Any]) -> None:
        self._text.append(choice.get("text") or "")
        logprobs_block = choice.get("logprobs")
        token_ids = choice.get("token_ids")
        if token_ids is None and logprobs_block is not None:
            token_ids = [_token_id(token) for token in logprobs_block["tokens"]]
        if token_ids is None and choice.get("text"):
            raise _no_token_ids()
        self._token_ids.extend(int(t) for t in token_ids or ())
        if logprobs_block is not None:
            self._top = (self._top or []) + list(logprobs_block["top_logprobs"])
        if choice.get("finish_reason") is not None:
            self._finish = choice["finish_reason"]

    def generation(self, *, cut: bool) -> Generation:
        """`cut`: the stream was closed at the deadline (unless it had already finished)."""
        if self._finish is None and not cut:
            raise Unavailable(f"the stream of request {self._request_id} ended without a finish")
        reason = (
            "deadline" if self._finish is None else finish_reason(self._finish, self._request_id)
        )
        details = self._usage.get("prompt_tokens_details") or {}
        return Generation(
            token_ids=tuple(self._token_ids),
            text="".join(self._text),
            finish_reason=reason,
            prompt_tokens=int(self._usage.get("prompt_tokens", self._prompt_len)),
            logprobs=None if self._top is None else _positions(self._top),
            cached_prompt_tokens=int(details.get("cached_tokens") or 0),
        )
