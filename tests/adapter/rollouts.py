"""n samples of one prompt through OpenRLHF's RolloutRayActor.generate_responses, as its
samples generator calls it (shared by the reward-function, mixed-reward and agent tests)."""

from __future__ import annotations

from typing import Any

from tests.adapter.harness import sampling_params


async def generate_samples(
    actor: Any, tokenizer: Any, prompt: str, n: int, label: object
) -> list[dict[str, Any]]:
    outputs: list[dict[str, Any]] = await actor.generate_responses(
        prompt=prompt,
        label=label,
        sampling_params=sampling_params(),
        max_length=512,
        hf_tokenizer=tokenizer,
        num_samples=n,
    )
    return outputs
