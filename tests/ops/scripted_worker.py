"""`rrm worker` exactly as deployed (settings from the RRM_ environment, `app.run_worker`), with
the ScriptedEngine TEST DOUBLE in place of vLLM: for tests of what surrounds the engine (Redis
credentials, metrics, Prometheus, dashboards) on a machine where a real engine per test is too
slow. The real engines are tested in tests/engine and the end-to-end tests.

What the scripted judge answers depends on a marker in the query, so a test can make every
outcome the dashboards count:

    [fail]         the engine fails this request while answering probes (a job fault): the
                   job spends its tries and is dead-lettered, its caller gets FAILED
    [budget]       the reasoning hits its budget: the verdict is forced (BUDGET_FORCED)
    [unparseable]  the judge stops without a verdict (UNPARSEABLE)
    anything else  "\\boxed{Assistant 1}" (OK)

    RRM_QUEUE__KIND=redis RRM_QUEUE__REDIS_URL=... python -m tests.ops.scripted_worker
"""

from __future__ import annotations

import asyncio
import math
from typing import cast

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from reward_service import app
from reward_service.engine import factory
from reward_service.engine.base import Engine
from reward_service.errors import Unavailable
from reward_service.judge import Judge
from reward_service.settings import Settings
from reward_service.testing.scripted_engine import (
    EngineCall,
    Responder,
    ScriptedEngine,
    ScriptedReply,
)

LATENCY_S = 0.2  # long enough for jobs to be seen in flight and waiting


class ScriptedEngineFailure(Unavailable):
    """The scripted engine's failure on a `[fail]` query: engines raise Unavailable for a
    request they could not run."""


def responder(judge: Judge, tokenizer: PreTrainedTokenizerBase) -> Responder:
    one, two = judge.verdict_token_ids
    verdict_read = ScriptedReply(
        text="1",
        token_ids=(one,),
        finish_reason="length",
        logprobs=({one: math.log(0.7), two: math.log(0.3)},),
    )

    def reply(call: EngineCall) -> ScriptedReply:
        if call.spec.max_tokens == 1 and call.spec.logprobs:
            return verdict_read
        prompt = tokenizer.decode(list(call.prompt_ids))
        if "[fail]" in prompt:
            return ScriptedReply(error=ScriptedEngineFailure("scripted engine failure"))
        if "[budget]" in prompt:
            n = call.spec.max_tokens
            return ScriptedReply("Let me think", tuple(range(100, 100 + n)), "length")
        if "[unparseable]" in prompt:
            return ScriptedReply("I cannot decide.", tuple(range(100, 105)), "stop")
        return ScriptedReply("A is right.\n\\boxed{Assistant 1}", tuple(range(100, 110)), "stop")

    return reply


def main() -> None:
    settings = Settings()
    judge = app.load_judge(settings)
    tokenizer = AutoTokenizer.from_pretrained(settings.engine.tokenizer or settings.model_path())
    script = responder(judge, tokenizer)

    # The one substitution: app.run_worker builds its engine through factory.build_engine.
    def scripted(settings: Settings) -> Engine:
        return cast(Engine, ScriptedEngine(script, LATENCY_S))

    factory.build_engine = scripted
    asyncio.run(app.run_worker(settings))


if __name__ == "__main__":
    main()
