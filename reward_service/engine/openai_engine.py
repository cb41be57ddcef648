"""An engine on a remote OpenAI-compatible completions server that takes token-id prompts.

Lets the judge share a vLLM (or SGLang) deployment that something else runs. Prompts go as token
ids, and vLLM's `return_token_ids` / `return_tokens_as_token_ids` extensions bring ids back, so
the budget-forced verdict can continue exactly the sequence the model produced.
"""

from __future__ import annotations

import asyncio
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
    """`Engine` over HTTP: `POST {base_url}/completions`, one request per generation.

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
        try:
            async with asyncio.timeout_at(_loop_time(spec.end_by)):
                return await self._complete(body, request_id, len(prompt_ids))
        except TimeoutError:
            # A non-streamed completion has nothing to show before it ends: the reasoning is
            # lost and the caller forces the verdict right after the prompt.
            return Generation(
                token_ids=(), text="", finish_reason="deadline", prompt_tokens=len(prompt_ids)
            )

    async def _complete(self, body: dict[str, Any], request_id: str, prompt_len: int) -> Generation:
        url = f"{self._base_url}/completions"
        try:
            response = await self._client.post(url, json=body)
        except httpx.TimeoutException as exc:
            raise EngineTimeout(
                f"{url}: no answer within {self._settings.request_timeout_s:.0f} s "
                f"for request {request_id}"
            ) from exc
        except httpx.HTTPError as exc:
            raise Unavailable(f"{url}: {type(exc).__name__}: {exc}") from exc
        _raise_for_status(response, url)
        return _to_generation(response.json(), request_id, prompt_len)

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
        raise Unavailable(
            "the completions server returned no token ids; it must support vLLM's "
            "return_token_ids (or return_tokens_as_token_ids with logprobs)"
        )
    logprobs = None
    if logprobs_block is not None:
        top: list[Mapping[str, Any] | None] = logprobs_block["top_logprobs"]
        logprobs = PositionLogprobs(
            len(top),
            lambda i: {_token_id(key): float(value) for key, value in (top[i] or {}).items()},
        )
    usage = payload.get("usage") or {}
    details = usage.get("prompt_tokens_details") or {}
    return Generation(
        token_ids=tuple(int(t) for t in token_ids),
        text=choice["text"],
        finish_reason=finish_reason(choice.get("finish_reason"), request_id),
        prompt_tokens=int(usage.get("prompt_tokens", prompt_len)),
        logprobs=logprobs,
        cached_prompt_tokens=int(details.get("cached_tokens") or 0),
    )
