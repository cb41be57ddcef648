"""From OpenRLHF's (query, prompt, label) to the judge's conversation and response."""

from __future__ import annotations

from typing import Any

from policy_adapter.results import Turn
from policy_adapter.texts import (
    EMPTY_RESPONSE,
    Label,
    conversation_of,
    judgeable,
    parse_label,
    response_of,
)


def test_chatml_prompt_rendered_by_the_real_tokenizer(tokenizer: Any) -> None:
    messages = [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4."},
        {"role": "user", "content": "And 3+3?"},
    ]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    conversation = conversation_of(prompt)
    assert conversation.query == "And 3+3?"
    assert conversation.history[-2:] == (Turn("user", "What is 2+2?"), Turn("assistant", "4."))
    assert all(
        t.role in ("system", "user", "assistant") and t.content for t in conversation.history
    )

    ids = tokenizer.encode(prompt, add_special_tokens=False)
    ids += [*tokenizer.encode("It is 6.", add_special_tokens=False), tokenizer.eos_token_id]
    query = tokenizer.decode(ids, skip_special_tokens=False)  # as OpenRLHF decodes it
    assert response_of(query, prompt) == "It is 6."


def test_llama3_and_plain_prompts() -> None:
    llama = (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nName a colour.<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert conversation_of(llama).query == "Name a colour."
    assert conversation_of(llama).history == (Turn("system", "Be brief."),)
    plain = "Question: why is the sky blue?\nAnswer:"
    assert conversation_of(plain).query == plain and conversation_of(plain).history == ()


def test_response_extraction_strips_end_markers_and_survives_a_changed_prompt() -> None:
    assert response_of("P: hi A: hello<|im_end|>\n", "P: hi A:") == "hello"
    assert response_of("P:  hi A: yes</s>", "P: hi A:") == "hi A: yes"  # cut where they differ
    assert judgeable("") == EMPTY_RESPONSE and judgeable("  ") == EMPTY_RESPONSE
    assert judgeable("ok") == "ok"


def test_labels_carry_a_group_or_a_reference() -> None:
    assert parse_label('{"group": 7, "reference": "42"}', plain="ignore") == Label("7", "42")
    assert parse_label({"group": "g"}, plain="reference") == Label("g", None)
    assert parse_label("42", plain="reference") == Label(None, "42")
    assert parse_label("g1", plain="group") == Label("g1", None)
    assert parse_label("g1", plain="ignore") == Label()
    assert parse_label("", plain="reference") == Label()
    assert parse_label("{not json", plain="reference") == Label(None, "{not json")
