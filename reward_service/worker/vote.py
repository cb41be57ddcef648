"""One vote: render, let the judge reason, read its verdict and the verdict's probability.

One engine call per natural verdict. The reasoning is sampled (up to the task's budget) with the
top-20 logprobs of every generated token, so p(first) of a verdict the judge writes itself is
read at its verdict token, in the same request:
- natural verdict (OK): the verdict comes from the text; p(first) from the reasoning's logprobs
  at the verdict token (`Judge.verdict_position`). Only when the judge wrote the box in another
  tokenisation (or the engine returned no logprobs) is p(first) re-read by a second, one-token
  call on the re-encoded completion up to its box + "\\boxed{Assistant " (prefix-cached); p_first
  is None in the rare case that neither verdict token is in that read's top-20;
- budget ran out without a verdict (BUDGET_FORCED): a second call continues the generated ids with
  the judge's forced suffix (end of reasoning + "\\boxed{Assistant "); the verdict is the likelier
  of the two verdict tokens (if neither is in the top-20, or they tie exactly: UNPARSEABLE);
- the job's deadline neared while the judge was still reasoning (DEADLINE_FORCED): the engine
  cut the reasoning at `verdict_by` and the verdict is forced from what it had written, as for
  the budget, so the caller gets a verdict in time instead of DEADLINE_EXCEEDED (unless the task
  opted out: `VoteTask.deadline_forcing`);
- the judge stopped by itself without a readable verdict (UNPARSEABLE): no second call, verdict
  UNDECIDED and p_first None. We do not invent a 0.5: the gateway counts it as no vote, and a
  forced read would put words in a judge that chose to stop (the reference counts it as a tie).
  A caller who wants every vote decided asks for it (`VoteTask.force_verdict_on_stop`): the
  completion is re-encoded, closed as for the budget and read (STOP_FORCED).
The logprobs are raw (before temperature scaling; see `Generation.logprobs`), so the one-call
probability is the one a temperature-1 re-read reports. Engine exceptions propagate: the worker
decides between retry and failure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from reward_service import metrics
from reward_service.domain import ParseStatus, Verdict, VoteResult, VoteTask
from reward_service.engine.base import Engine, Generation, SamplingSpec
from reward_service.errors import Unavailable
from reward_service.judge import Judge

READ_TOP_LOGPROBS = 20
# Generations that ended before the judge could write a verdict, and what forcing one is called.
CUT_SHORT = {"length": ParseStatus.BUDGET_FORCED, "deadline": ParseStatus.DEADLINE_FORCED}


class VerdictReadError(RuntimeError):
    """The engine broke the protocol on the verdict read (no logprobs for the read token)."""


async def judge_vote(
    judge: Judge,
    engine: Engine,
    task: VoteTask,
    request_id: str,
    verdict_by: float | None = None,
    *,
    one_call: bool = True,
    prompt_ids: Sequence[int] | None = None,
) -> VoteResult:
    """`verdict_by`: wall-clock time by which the reasoning must end (the job's deadline less
    the time a forced read and the answer's way back take); None: no limit. `one_call`: ask the
    reasoning call for logprobs (a natural verdict needs no read); off, every verdict is read by
    a second request. `prompt_ids`: `judge.render(task.pair)` when the caller has it already
    (rendering tokenises the whole prompt, so the runner renders once per vote)."""
    prompt = list(prompt_ids) if prompt_ids is not None else judge.render(task.pair)
    spec = SamplingSpec(
        max_tokens=task.max_reasoning_tokens,
        temperature=task.temperature,
        seed=task.seed if engine.supports_seed else None,
        logprobs=READ_TOP_LOGPROBS if one_call else None,
        end_by=verdict_by if task.deadline_forcing else None,
    )
    metrics.ENGINE_REQUESTS.labels("reasoning").inc()
    gen = await engine.generate(prompt, spec, request_id)
    _check_finished(gen, request_id)
    parsed = judge.parse(gen.text)
    reasoning = parsed.reasoning if task.return_reasoning else None

    if parsed.status is ParseStatus.OK:
        position = judge.verdict_position(gen.token_ids, gen.text, parsed)
        if position is not None and gen.logprobs is not None and position < len(gen.logprobs):
            p_first = judge.p_first(gen.logprobs[position])
            return _vote(gen, None, parsed.verdict, p_first, ParseStatus.OK, reasoning)
        read_ids = [*prompt, *judge.reread_ids(gen.text, parsed)]
        read = await _read_verdict(engine, read_ids, request_id, "verdict_read")
        p_first = judge.p_first(_top_logprobs(read, request_id))
        return _vote(gen, read, parsed.verdict, p_first, ParseStatus.OK, reasoning)
    if gen.finish_reason in CUT_SHORT:
        read_ids = [*prompt, *gen.token_ids, *judge.forced_suffix_ids(gen.text)]
        status = CUT_SHORT[gen.finish_reason]
    elif task.force_verdict_on_stop:
        read_ids = [*prompt, *judge.stop_forced_ids(gen.text)]
        status = ParseStatus.STOP_FORCED
    else:
        return _vote(gen, None, Verdict.UNDECIDED, None, ParseStatus.UNPARSEABLE, reasoning)
    read = await _read_verdict(engine, read_ids, request_id, "forced_read")
    p_forced = judge.p_first(_top_logprobs(read, request_id))
    verdict, status, p_first = _forced_verdict(p_forced, status)
    return _vote(gen, read, verdict, p_first, status, reasoning)


def _vote(
    gen: Generation,
    read: Generation | None,
    verdict: Verdict,
    p_first: float | None,
    status: ParseStatus,
    reasoning: str | None,
) -> VoteResult:
    """Usage counts both calls when there were two: the read's prompt is mostly a prefix-cache
    hit, which cached_prompt_tokens shows."""
    extra = read or Generation(token_ids=(), text="", finish_reason="stop", prompt_tokens=0)
    return VoteResult(
        verdict=verdict,
        p_first=p_first,
        status=status,
        reasoning_tokens=len(gen.token_ids),
        prompt_tokens=gen.prompt_tokens + extra.prompt_tokens,
        completion_tokens=len(gen.token_ids) + len(extra.token_ids),
        cached_prompt_tokens=gen.cached_prompt_tokens + extra.cached_prompt_tokens,
        reasoning=reasoning,
    )


def _forced_verdict(
    p_first: float | None, status: ParseStatus
) -> tuple[Verdict, ParseStatus, float | None]:
    """The likelier verdict token; no verdict token in the top-k (or an exact tie) reads nothing."""
    if p_first is None or p_first == 0.5:
        return Verdict.UNDECIDED, ParseStatus.UNPARSEABLE, None
    verdict = Verdict.FIRST if p_first > 0.5 else Verdict.SECOND
    return verdict, status, p_first


async def _read_verdict(
    engine: Engine, prompt_ids: list[int], request_id: str, purpose: str
) -> Generation:
    # Temperature 1: the logprobs are the model's own distribution whichever way an engine
    # reports them (raw or after temperature scaling). No seed: nothing is sampled that matters.
    spec = SamplingSpec(max_tokens=1, temperature=1.0, logprobs=READ_TOP_LOGPROBS)
    metrics.ENGINE_REQUESTS.labels(purpose).inc()
    read = await engine.generate(prompt_ids, spec, f"{request_id}/verdict")
    _check_finished(read, f"{request_id}/verdict")
    return read


def _top_logprobs(read: Generation, request_id: str) -> Mapping[int, float]:
    if not read.logprobs:
        raise VerdictReadError(f"{request_id}: the engine returned no logprobs for the verdict")
    return read.logprobs[0]


def _check_finished(gen: Generation, request_id: str) -> None:
    if gen.finish_reason == "abort":
        raise Unavailable(f"{request_id}: the engine aborted the request")
