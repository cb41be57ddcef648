"""A tiny RRM that judges: the tiny Qwen2 (real vocabulary, DeepSeek-R1-Distill template) trained
offline on CPU to follow `rrm_synthetic`'s rule in the RRM format, for real-engine tests.

`python -m reward_service.testing.tiny_rrm --dest DIR` (or `make rrm-model`) builds it once;
deterministic for a seed. Training prompts are the service's own: `Judge.render` (RRM profile)
on the tiny tokenizer, so what the model learned is byte for byte what the service sends.

Training is cheap because of two exact shortcuts (exact: vLLM's full softmax computes the same):
- Every token the synthetic data never uses shares ONE trained output row ("other") and gets a
  random input row. The training softmax runs over the ~200 used ids plus that class with logit
  `w_other . h + log(n_other)`, which is exactly what the full 151,936-way softmax gives when the
  n_other unused rows are equal to w_other (they are, in the saved lm_head: untied embeddings).
- The ~330-token system prompt is the same in every prompt: its keys and values are computed once
  per step (batch 1, with gradients) and shared by the batch.
The forward is Qwen2's, written out (RMSNorm, RoPE, q/k/v biases, SwiGLU); the build checks it
against transformers' Qwen2ForCausalLM on the saved weights, then checks the saved model's greedy
completions under the full softmax.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from reward_service.domain import Verdict
from reward_service.judge import Judge, JudgeProfile
from reward_service.testing.rrm_synthetic import SUBJECTS, TOPICS, Judgment, make_judgment
from reward_service.testing.tiny_qwen import (
    FIRST_ADDED_ID,
    VOCAB_SIZE,
    _mirror_deepseek_tokenizer_config,
    build_tiny_rrm_tokenizer,
)

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

# The training model: a torch Module whose submodules get Qwen2's names at run time (untyped).
Net = Any
EOS_ID = FIRST_ADDED_ID
BUILD_INFO = "tiny_rrm_build.json"
# Long (never-ending) reasoning is trained up to this many cycles (~27 tokens each).
MAX_TRAIN_CYCLES = 3


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    hidden: int = 128
    layers: int = 2
    heads: int = 2  # head_dim 64: a size vLLM's CPU attention accepts
    intermediate: int = 256
    # 600: the forced verdict (read after a cut anywhere in the reasoning) needs the look-back to
    # the conclusion; 200 steps learned the natural verdict only (forced 32/60 sampled, 60/60 at
    # 600; ~75 s on 2 idle cores)
    steps: int = 600
    batch: int = 16
    lr: float = 3e-3
    long_fraction: float = 0.4
    # Loss weight of a forced verdict's token (one per forced example); 5.0 did not help in 200
    # steps (greedy forced agreement 2/6) and cost natural agreement (5/6): kept at 1.
    forced_weight: float = 1.0


@dataclass
class Example:
    ids: list[int]  # prompt + target
    loss_from: list[int]  # positions (into ids) whose NEXT token is a training target
    forced_at: int | None = None  # the position whose next token is a forced verdict


class Corpus:
    """Synthetic judgments -> token ids, rendered by the service's own judge."""

    def __init__(self, judge: Judge, tokenizer: PreTrainedTokenizerBase) -> None:
        self.judge = judge
        self.encode = judge._encode_generated  # generated text -> ids, `</think>` as its token
        self.forced = judge.forced_suffix_ids("")
        self.digit = dict(
            zip((Verdict.FIRST, Verdict.SECOND), judge.verdict_token_ids, strict=True)
        )
        for word in (*SUBJECTS, *TOPICS, " correct", " wrong"):
            if len(judge._raw.encode(word if word.startswith(" ") else f" {word}")) != 1:
                raise ValueError(f"{word!r} is not one token in this vocabulary")

    def example(self, j: Judgment, rng: random.Random) -> Example:
        prompt = self.judge.render(j.pair)
        if j.long:  # never ends by itself: trained on prefixes, each forced at its cut
            reasoning = self.encode(j.reasoning(rng.randint(1, MAX_TRAIN_CYCLES)))
            first_cycle = len(self.encode(j.evidence))
            cut = rng.randint(first_cycle, len(reasoning))
            return self._forced(prompt, reasoning[:cut], j.verdict)
        if rng.random() < 0.15:  # a short judgment cut just before it closes its reasoning
            return self._forced(prompt, self.encode(j.evidence), j.verdict)
        target = [*self.encode(j.completion), EOS_ID]
        start = len(prompt) - 1
        return Example([*prompt, *target], list(range(start, start + len(target))))

    def _forced(self, prompt: list[int], reasoning: list[int], verdict: Verdict) -> Example:
        ids = [*prompt, *reasoning, *self.forced, self.digit[verdict]]
        start = len(prompt) - 1
        return Example(ids, [*range(start, start + len(reasoning)), len(ids) - 2], len(ids) - 2)


def _rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    import torch

    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    import torch

    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def _model(cfg: TrainConfig, n_in: int, n_out: int) -> Net:
    """Qwen2's parameters under Qwen2's names, with small input/output vocabularies."""
    import torch
    from torch import nn

    h, inter = cfg.hidden, cfg.intermediate

    def layer() -> nn.Module:
        attn = nn.Module()
        attn.q_proj, attn.k_proj, attn.v_proj = (nn.Linear(h, h) for _ in range(3))
        attn.o_proj = nn.Linear(h, h, bias=False)
        mlp = nn.Module()
        mlp.gate_proj, mlp.up_proj = (
            nn.Linear(h, inter, bias=False),
            nn.Linear(h, inter, bias=False),
        )
        mlp.down_proj = nn.Linear(inter, h, bias=False)
        block = nn.Module()
        block.self_attn, block.mlp = attn, mlp
        block.input_layernorm = nn.Parameter(torch.ones(h))
        block.post_attention_layernorm = nn.Parameter(torch.ones(h))
        return block

    model = nn.Module()
    model.embed_tokens = nn.Embedding(n_in, h)
    model.layers = nn.ModuleList(layer() for _ in range(cfg.layers))
    model.norm = nn.Parameter(torch.ones(h))
    model.lm_head = nn.Linear(h, n_out, bias=False)
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            nn.init.zeros_(p)
        elif p.dim() == 2:
            nn.init.normal_(p, std=0.02)
    with torch.no_grad():
        model.lm_head.weight[-1].zero_()  # the shared "other" row
    return model


class _Forward:
    """Qwen2's forward for a shared prefix (1, P) and a batch of suffixes (B, S)."""

    def __init__(self, model: Net, cfg: TrainConfig, theta: float, eps: float) -> None:
        self.model, self.cfg, self.theta, self.eps = model, cfg, theta, eps

    def rotary(self, start: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        d = self.cfg.hidden // self.cfg.heads
        inv_freq = 1.0 / (self.theta ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
        freqs = torch.arange(start, start + n, dtype=torch.float32)[:, None] * inv_freq[None]
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos(), emb.sin()

    def mlp(self, block: Net, x: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        h = _rms(x, block.post_attention_layernorm, self.eps)
        return x + block.mlp.down_proj(F.silu(block.mlp.gate_proj(h)) * block.mlp.up_proj(h))

    def __call__(self, prefix: torch.Tensor, suffix: torch.Tensor) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        m, heads = self.model, self.cfg.heads
        p_len, (batch, s_len) = prefix.shape[0], suffix.shape
        rot_p, rot_s = self.rotary(0, p_len), self.rotary(p_len, s_len)
        mask = torch.ones(s_len, p_len + s_len, dtype=torch.bool)
        mask[:, p_len:] = torch.tril(torch.ones(s_len, s_len, dtype=torch.bool))
        xp, xs = m.embed_tokens(prefix)[None], m.embed_tokens(suffix)

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(t.shape[0], t.shape[1], heads, -1).transpose(1, 2)

        for block in m.layers:
            a = block.self_attn
            hp, hs = (
                _rms(xp, block.input_layernorm, self.eps),
                _rms(xs, block.input_layernorm, self.eps),
            )
            qp, kp, vp = (split(proj(hp)) for proj in (a.q_proj, a.k_proj, a.v_proj))
            qs, ks, vs = (split(proj(hs)) for proj in (a.q_proj, a.k_proj, a.v_proj))
            qp, kp = _rope(qp, *rot_p), _rope(kp, *rot_p)
            qs, ks = _rope(qs, *rot_s), _rope(ks, *rot_s)
            out_p = F.scaled_dot_product_attention(qp, kp, vp, is_causal=True)
            keys = torch.cat((kp.expand(batch, -1, -1, -1), ks), dim=2)
            values = torch.cat((vp.expand(batch, -1, -1, -1), vs), dim=2)
            out_s = F.scaled_dot_product_attention(qs, keys, values, attn_mask=mask)
            xp = xp + a.o_proj(out_p.transpose(1, 2).reshape(1, p_len, -1))
            xs = xs + a.o_proj(out_s.transpose(1, 2).reshape(batch, s_len, -1))
            xp, xs = self.mlp(block, xp), self.mlp(block, xs)
        return _rms(xs, m.norm, self.eps)


def train(
    cfg: TrainConfig, judge: Judge, tokenizer: PreTrainedTokenizerBase, log: Any = print
) -> tuple[Net, list[int], dict[str, Any]]:
    """Returns the small model, its used real ids (small index -> real id) and stats."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    corpus = Corpus(judge, tokenizer)
    probe = [corpus.example(make_judgment(rng, long=i % 2 == 1), rng) for i in range(400)]
    used = sorted({t for e in probe for t in e.ids} | {EOS_ID, *corpus.forced})
    prefix = _common_prefix([e.ids for e in probe])
    index = {t: i for i, t in enumerate(used)}
    n_other = VOCAB_SIZE - len(used)
    model = _model(cfg, len(used), len(used) + 1)
    theta, eps = _qwen2_config(cfg, tokenizer).rope_parameters["rope_theta"], 1e-6
    forward = _Forward(model, cfg, theta, eps)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    warmup = max(1, cfg.steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: (
            min(1.0, (s + 1) / warmup)
            * 0.5
            * (1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps))
        ),
    )
    prefix_t = torch.tensor([index[t] for t in prefix])
    log_other = math.log(n_other)
    started, losses = time.monotonic(), []
    for step in range(cfg.steps):
        batch = [
            corpus.example(make_judgment(rng, long=rng.random() < cfg.long_fraction), rng)
            for _ in range(cfg.batch)
        ]
        for e in batch:
            if e.ids[: len(prefix)] != prefix:
                raise RuntimeError("a prompt does not start with the shared prefix")
        s_len = max(len(e.ids) for e in batch) - len(prefix)
        suffix = torch.zeros(cfg.batch, s_len, dtype=torch.long)
        rows, cols, labels, weights = [], [], [], []
        for b, e in enumerate(batch):
            tail = [index[t] for t in e.ids[len(prefix) :]]
            suffix[b, : len(tail)] = torch.tensor(tail)
            for pos in e.loss_from:
                rows.append(b)
                cols.append(pos - len(prefix))
                labels.append(index[e.ids[pos + 1]])
                weights.append(cfg.forced_weight if pos == e.forced_at else 1.0)
        hidden = forward(prefix_t, suffix)[torch.tensor(rows), torch.tensor(cols)]
        logits = model.lm_head(hidden)
        logits = torch.cat((logits[:, :-1], logits[:, -1:] + log_other), dim=1)
        w = torch.tensor(weights)
        loss = (F.cross_entropy(logits, torch.tensor(labels), reduction="none") * w).sum() / w.sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if step % 25 == 0 or step == cfg.steps - 1:
            log(f"step {step:4d} loss {loss.item():.4f} ({time.monotonic() - started:.0f} s)")
    stats = {
        "train_seconds": round(time.monotonic() - started, 1),
        "final_loss": round(sum(losses[-20:]) / len(losses[-20:]), 5),
        "used_ids": len(used),
        "shared_prefix_tokens": len(prefix),
    }
    return model, used, stats


def _common_prefix(seqs: Sequence[Sequence[int]]) -> list[int]:
    first = list(seqs[0])
    n = min(len(s) for s in seqs)
    for s in seqs[1:]:
        n = next((i for i in range(n) if s[i] != first[i]), n)
    return first[:n]


def _qwen2_config(cfg: TrainConfig, tokenizer: PreTrainedTokenizerBase) -> Any:
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=VOCAB_SIZE,
        hidden_size=cfg.hidden,
        intermediate_size=cfg.intermediate,
        num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads,
        num_key_value_heads=cfg.heads,
        max_position_embeddings=32768,
        tie_word_embeddings=False,
        bos_token_id=FIRST_ADDED_ID + 3,
        eos_token_id=EOS_ID,
        pad_token_id=EOS_ID,
    )


def to_qwen2_state(model: Net, used: list[int], seed: int) -> dict[str, torch.Tensor]:
    """Full-vocabulary Qwen2ForCausalLM weights: unused ids share the trained "other" row."""
    import torch

    state: dict[str, torch.Tensor] = {}
    for name, p in model.named_parameters():
        if name.startswith(("embed_tokens", "lm_head")):
            continue
        norm = name == "norm" or name.endswith("layernorm")  # bare Parameters here
        state[f"model.{name}" + (".weight" if norm else "")] = p.detach().clone()
    ids = torch.tensor(used)
    generator = torch.Generator().manual_seed(seed)
    embed = torch.randn(VOCAB_SIZE, model.embed_tokens.weight.shape[1], generator=generator) * 0.02
    embed[ids] = model.embed_tokens.weight.detach()
    head = model.lm_head.weight.detach()[-1].expand(VOCAB_SIZE, -1).clone()
    head[ids] = model.lm_head.weight.detach()[:-1]
    state["model.embed_tokens.weight"], state["lm_head.weight"] = embed, head
    return state


def build_trained_rrm_model(
    dest: Path, cfg: TrainConfig | None = None, *, log: Any = print, check_pairs: int = 12
) -> Path:
    """Write the trained tiny RRM at `dest` once: an existing build is reused while its key
    (config, training code, rendered prompt) is this one's, rebuilt when any of them changed."""
    dest, cfg = Path(dest), cfg or TrainConfig()
    tokenizer = build_tiny_rrm_tokenizer()
    judge = Judge(tokenizer, JudgeProfile.RRM)
    key = build_key(cfg, judge)
    if (dest / BUILD_INFO).exists():
        if json.loads((dest / BUILD_INFO).read_text("utf-8")).get("key") == key:
            return dest
        log(f"{dest}: built from other code or settings, building again")
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    started = time.monotonic()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model, used, stats = train(cfg, judge, tokenizer, log)
    config = _qwen2_config(cfg, tokenizer)
    hf = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = hf.load_state_dict(to_qwen2_state(model, used, cfg.seed), strict=False)
    if missing or unexpected:
        raise RuntimeError(f"weights do not map onto Qwen2: {missing} {unexpected}")
    stats["forward_max_abs_diff"] = _check_forward(model, cfg, config, hf, judge, used)
    hf = hf.to(torch.bfloat16)
    hf.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=EOS_ID, do_sample=True
    )
    staging = dest.with_name(dest.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    hf.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    _mirror_deepseek_tokenizer_config(staging / "tokenizer_config.json")
    stats.update(greedy_check(staging, judge, check_pairs, seed=cfg.seed + 1))
    stats["build_seconds"] = round(time.monotonic() - started, 1)
    info = {"key": key, "config": asdict(cfg), "stats": stats}
    (staging / BUILD_INFO).write_text(json.dumps(info, indent=2) + "\n", "utf-8")
    log(json.dumps(stats))
    shutil.rmtree(dest, ignore_errors=True)
    staging.rename(dest)
    return dest


def build_key(cfg: TrainConfig, judge: Judge) -> str:
    """What a build depends on: its config, the code that makes its data and trains it, and the
    prompt the service's judge renders (a template change means a model trained on other text)."""
    import hashlib
    import inspect

    from reward_service.testing import rrm_synthetic, tiny_qwen

    digest = hashlib.sha256(json.dumps(asdict(cfg), sort_keys=True).encode())
    for module in (rrm_synthetic, tiny_qwen, inspect.getmodule(build_key)):
        digest.update(inspect.getsource(module).encode())  # type: ignore[arg-type]
    j = make_judgment(random.Random(cfg.seed), long=False)
    digest.update(repr([judge.render(j.pair), judge.forced_suffix_ids("")]).encode())
    return digest.hexdigest()[:16]


def _check_forward(
    model: Net, cfg: TrainConfig, config: Any, hf: Any, judge: Judge, used: list[int]
) -> float:
    """The written-out forward equals transformers' Qwen2 on the converted weights."""
    import torch

    j = make_judgment(random.Random(cfg.seed + 7), long=False)
    ids = [*judge.render(j.pair), *judge._encode_generated(j.completion)]
    index = {t: i for i, t in enumerate(used)}
    forward = _Forward(model, cfg, config.rope_parameters["rope_theta"], 1e-6)
    with torch.no_grad():
        small = [index[t] for t in ids]
        mine = model.lm_head(forward(torch.tensor(small[:100]), torch.tensor([small[100:]])))[0]
        theirs = hf(torch.tensor([ids])).logits[0, 100:]
    diff = float((mine[:, :-1] - theirs[:, used]).abs().max())
    unused = next(i for i in range(VOCAB_SIZE) if i not in index)
    other = float((mine[:, -1] - theirs[:, unused]).abs().max())
    if max(diff, other) > 1e-3:
        raise RuntimeError(f"the training forward differs from Qwen2's: {diff} / {other}")
    return max(diff, other)


def greedy_check(model_dir: Path, judge: Judge, pairs: int, seed: int) -> dict[str, float]:
    """Greedy completions of the saved (bf16) model under the full softmax, on fresh pairs:
    format and rule for short judgments, no close and a forced verdict for long ones."""
    import torch
    from transformers import AutoModelForCausalLM

    hf: Any = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    rng = random.Random(seed)
    agree = forced_agree = still_open = 0
    with torch.no_grad():
        for i in range(pairs):
            j = make_judgment(rng, long=i % 2 == 1)
            prompt = torch.tensor([judge.render(j.pair)])
            out = hf.generate(prompt, max_new_tokens=40, do_sample=False)[0, prompt.shape[1] :]
            text = judge._decode_generated(out.tolist())
            if not j.long:
                agree += judge.parse(text).verdict is j.verdict
                continue
            still_open += "</think>" not in text
            ids = [*prompt[0].tolist(), *out.tolist(), *judge.forced_suffix_ids(text)]
            logits = hf(torch.tensor([ids])).logits[0, -1]
            first, second = judge.verdict_token_ids
            best = int(logits.argmax())
            forced_agree += best == (first if j.verdict is Verdict.FIRST else second)
    half = pairs / 2
    return {
        "greedy_short_agreement": agree / half,
        "greedy_long_still_reasoning": still_open / half,
        "greedy_forced_agreement": forced_agree / half,
    }


@click.command()
@click.option("--dest", type=click.Path(path_type=Path), required=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--steps", type=int, default=TrainConfig.steps, show_default=True)
@click.option("--force", is_flag=True, help="Build again even if the folder exists.")
def main(dest: Path, seed: int, steps: int, force: bool) -> None:
    """Build the trained tiny RRM into DEST (a few minutes on CPU)."""
    if force:
        shutil.rmtree(dest, ignore_errors=True)
    click.echo(str(build_trained_rrm_model(dest, TrainConfig(seed=seed, steps=steps))))


if __name__ == "__main__":
    main()
