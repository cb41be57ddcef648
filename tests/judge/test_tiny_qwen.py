"""The tiny RRM-shaped test model: real Qwen2.5 vocabulary, DeepSeek tokens and template."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from reward_service.testing.tiny_qwen import build_tiny_rrm_model, chat_template

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# sha256 of shared/spec/deepseek-r1-distill-qwen.chat_template.jinja, which is vendored verbatim.
TEMPLATE_SHA256 = "795ba6276beff6e84e75213f77a7e7fff71b6c587618a6ed43c1f90c2ad2334a"


def test_spec_example_ids(qwen_tokenizer: PreTrainedTokenizerBase) -> None:
    text = "<｜begin▁of▁sentence｜><｜User｜>Hello, world!<｜Assistant｜>"
    assert qwen_tokenizer.encode(text, add_special_tokens=False) == [
        151646,
        151644,
        9707,
        11,
        1879,
        0,
        151645,
    ]


def test_added_tokens_sit_at_deepseek_ids(qwen_tokenizer: PreTrainedTokenizerBase) -> None:
    added = {
        i: (str(t.content), bool(t.special)) for i, t in qwen_tokenizer.added_tokens_decoder.items()
    }
    assert added == {
        151643: ("<｜end▁of▁sentence｜>", True),
        151644: ("<｜User｜>", True),
        151645: ("<｜Assistant｜>", True),
        151646: ("<｜begin▁of▁sentence｜>", True),
        151647: ("<|EOT|>", True),
        151648: ("<think>", False),
        151649: ("</think>", False),
    }
    assert qwen_tokenizer.bos_token_id == 151646 and qwen_tokenizer.eos_token_id == 151643
    # Like DeepSeek's tokenizer, plain encode prepends BOS.
    assert qwen_tokenizer.encode("Hello") == [151646, 9707]


def test_qwen_pretokenizer_splits_digits_one_by_one(
    qwen_tokenizer: PreTrainedTokenizerBase,
) -> None:
    assert qwen_tokenizer.encode("123", add_special_tokens=False) == [16, 17, 18]


def test_template_is_vendored_verbatim(qwen_tokenizer: PreTrainedTokenizerBase) -> None:
    assert hashlib.sha256(chat_template().encode("utf-8")).hexdigest() == TEMPLATE_SHA256
    assert qwen_tokenizer.chat_template == chat_template()


def test_build_is_idempotent_and_the_model_runs(tiny_rrm_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    before = (tiny_rrm_dir / "model.safetensors").stat().st_mtime_ns
    assert build_tiny_rrm_model(tiny_rrm_dir) == tiny_rrm_dir
    assert (tiny_rrm_dir / "model.safetensors").stat().st_mtime_ns == before
    model = AutoModelForCausalLM.from_pretrained(tiny_rrm_dir)
    config = model.config
    assert config.model_type == "qwen2" and config.vocab_size == 151936
    assert config.hidden_size // config.num_attention_heads == 64
    with torch.no_grad():
        logits = model(torch.tensor([[151646, 9707, 151645, 151648]])).logits
    assert logits.shape == (1, 4, 151936) and torch.isfinite(logits).all()
