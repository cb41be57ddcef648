"""What the adapter tests drive OpenRLHF 0.11.2 with, without a GPU, Ray or a policy model.

- `openrlhf_rollout()`: OpenRLHF's own rollout modules (`trainer/ray/vllm_engine.py`:
  `_load_agent_executor`, `RolloutRayActor.generate_responses` / `.generate`;
  `trainer/ppo_utils/samples_generator.py`: `_process_response_into_experience`), imported with
  a stand-in `ray` (not installable here: `ray.remote` leaves the class plain) and, when vLLM is
  not already loaded, a stand-in for the two vLLM names they bind at import (`TokensPrompt`, a
  TypedDict, and `random_uuid`) to save vLLM's 15 s import. sys.modules is restored right after.
- `ScriptedPolicy`: a TEST DOUBLE for the policy's vLLM engine (`RolloutRayActor.llm`): it
  "generates" given texts, tokenized with the real tokenizer. The policy is not under test.
- `serving(app)`: an ASGI app on a real 127.0.0.1 port (uvicorn) on the running event loop.
"""

from __future__ import annotations

import asyncio
import importlib
import itertools
import socket
import sys
import types
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import uvicorn

ROOT = Path(__file__).resolve().parents[2]
MODEL_DIR = ROOT / ".cache" / "models" / "SmolLM2-135M-Instruct"
ADAPTER = ROOT / "policy_adapter"
AGENT_FILE = ADAPTER / "openrlhf_agent.py"
REWARD_FUNC_FILE = ADAPTER / "openrlhf_reward_func.py"

_ROLLOUT_MODULES = (
    "openrlhf.trainer.ray",
    "openrlhf.trainer.ray.vllm_engine",
    "openrlhf.trainer.ray.utils",
    "openrlhf.trainer.ppo_utils.samples_generator",
)


def _module(name: str, **attrs: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    return module


def _ray_stand_in() -> dict[str, types.ModuleType]:
    pg = _module("ray.util.placement_group", placement_group=None, PlacementGroup=object)
    ss = _module("ray.util.scheduling_strategies", PlacementGroupSchedulingStrategy=object)
    util = _module("ray.util", placement_group=pg, scheduling_strategies=ss)
    ray = _module("ray", remote=lambda cls: cls, util=util, get=None, wait=None)
    return {
        "ray": ray,
        "ray.util": util,
        "ray.util.placement_group": pg,
        "ray.util.scheduling_strategies": ss,
    }


def _vllm_stand_in() -> dict[str, types.ModuleType]:
    inputs = _module("vllm.inputs", TokensPrompt=dict)
    utils = _module("vllm.utils", random_uuid=lambda: uuid.uuid4().hex)
    vllm = _module("vllm", __version__="0.32.0", inputs=inputs, utils=utils, SamplingParams=object)
    vllm.__path__ = []
    return {"vllm": vllm, "vllm.inputs": inputs, "vllm.utils": utils}


@dataclass(frozen=True)
class Rollout:
    load_agent_executor: Callable[[str], Any]
    RolloutRayActor: type
    SamplesGenerator: type

    def actor(self, executor: Any, llm: Any) -> Any:
        """A RolloutRayActor without its vLLM engine: `llm` stands in for it."""
        actor: Any = object.__new__(self.RolloutRayActor)
        actor.executor = executor
        actor.llm = llm
        actor._mm_pad_token_ids = None
        return actor

    def experience(self, response: dict[str, Any]) -> Any:
        generator: Any = object.__new__(self.SamplesGenerator)
        return generator._process_response_into_experience(response, max_len=2048)


@contextmanager
def openrlhf_rollout() -> Iterator[Rollout]:
    stand_ins = _ray_stand_in()
    if "vllm" not in sys.modules:
        stand_ins |= _vllm_stand_in()
    touched = (*stand_ins, *_ROLLOUT_MODULES)
    saved = {name: sys.modules.get(name) for name in touched}
    try:
        for name in _ROLLOUT_MODULES:
            sys.modules.pop(name, None)
        sys.modules.update(stand_ins)
        engine = importlib.import_module("openrlhf.trainer.ray.vllm_engine")
        samples = importlib.import_module("openrlhf.trainer.ppo_utils.samples_generator")
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    yield Rollout(engine._load_agent_executor, engine.RolloutRayActor, samples.SamplesGenerator)


class ScriptedPolicy:
    """Stands in for `RolloutRayActor.llm` (vLLM AsyncLLM): call k "generates" texts[k % n],
    after `latency(text)` seconds, tokenized with the real tokenizer and ended by EOS."""

    def __init__(
        self, tokenizer: Any, texts: list[str], latency: Callable[[str], float] = lambda _: 0.0
    ) -> None:
        self.tokenizer = tokenizer
        self.texts = itertools.cycle(texts)
        self.latency = latency
        self.prompts: list[list[int]] = []

    async def generate(self, prompt: Any, params: Any, request_id: str) -> AsyncIterator[Any]:
        text = next(self.texts)
        self.prompts.append(list(prompt["prompt_token_ids"]))
        await asyncio.sleep(self.latency(text))
        ids = [*self.tokenizer.encode(text, add_special_tokens=False), self.tokenizer.eos_token_id]
        output = SimpleNamespace(token_ids=ids, text=text, finish_reason="stop", logprobs=None)
        yield SimpleNamespace(outputs=[output])


def sampling_params(max_tokens: int = 64) -> SimpleNamespace:
    """What the executor reads of vLLM's SamplingParams (as OpenRLHF's own tests pass it)."""
    return SimpleNamespace(max_tokens=max_tokens, logprobs=None)


def chat_prompt(tokenizer: Any, user: str) -> str:
    """A prompt as OpenRLHF's PromptDataset renders it with --data.apply_chat_template."""
    return str(
        tokenizer.apply_chat_template(
            [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True
        )
    )


def free_socket() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """Serve `app` with uvicorn on the running loop; yields its base URL."""
    sock = free_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@dataclass
class PolicyServer:
    """A real vLLM OpenAI-compatible server on the CPU model, playing the policy."""

    process: Any
    base_url: str  # .../v1
    log_path: Path


@contextmanager
def policy_server(log_dir: Path, timeout_s: float = 240.0) -> Iterator[PolicyServer]:
    import os
    import subprocess
    import time

    import httpx

    from reward_service.engine.cpu_env import cpu_env_defaults

    with free_socket() as sock:
        port = sock.getsockname()[1]
    log_path = log_dir / f"policy-{port}.log"
    env = {**os.environ, **cpu_env_defaults(ROOT / ".cache", kvcache_gib=1)}
    # vLLM binds its IPC sockets there: the folder must exist whatever ran before this
    Path(env["VLLM_RPC_BASE_PATH"]).mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(MODEL_DIR), "--host", "127.0.0.1", "--port", str(port),
        "--enforce-eager", "--max-model-len", "2048", "--max-num-seqs", "16",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=log)
    server = PolicyServer(process, f"http://127.0.0.1:{port}/v1", log_path)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"vLLM api_server exited:\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"vLLM api_server not healthy after {timeout_s} s")
            time.sleep(0.5)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
