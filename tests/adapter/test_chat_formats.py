"""The judge's conversation recovered from prompts rendered by real chat templates (Gemma-3,
Mistral-7B-Instruct-v0.3, DeepSeek-R1-Distill-Qwen, Qwen2.5-Instruct; written here from the
models' tokenizer_config.json, the tool-call branches of Mistral's and Qwen's left out), rendered
by transformers' own apply_chat_template: by the template itself (`TemplateReader`, the agent) and
by role markers alone (the reward function and the remote RM, which get no tokenizer)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from policy_adapter.chat_templates import TemplateReader, conversation_by_markers
from policy_adapter.results import Turn
from policy_adapter.texts import conversation_of, response_of
from tests.adapter.conftest import address_of
from tests.adapter.harness import AGENT_FILE, ROOT, Rollout, ScriptedPolicy
from tests.adapter.rollouts import generate_samples
from tests.gateway.conftest import Stack

GEMMA3 = (
    "{{ bos_token }}\n"
    "{%- if messages[0]['role'] == 'system' -%}\n"
    "    {%- if messages[0]['content'] is string -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}\n"
    "    {%- else -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}\n"
    "    {%- endif -%}\n"
    "    {%- set loop_messages = messages[1:] -%}\n"
    "{%- else -%}\n"
    '    {%- set first_user_prefix = "" -%}\n'
    "    {%- set loop_messages = messages -%}\n"
    "{%- endif -%}\n"
    "{%- for message in loop_messages -%}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
    '        {{ raise_exception("Conversation roles must alternate '
    'user/assistant/user/assistant/...") }}\n'
    "    {%- endif -%}\n"
    "    {%- if (message['role'] == 'assistant') -%}\n"
    '        {%- set role = "model" -%}\n'
    "    {%- else -%}\n"
    "        {%- set role = message['role'] -%}\n"
    "    {%- endif -%}\n"
    "    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}\n"
    "    {%- if message['content'] is string -%}\n"
    "        {{ message['content'] | trim }}\n"
    "    {%- elif message['content'] is iterable -%}\n"
    "        {%- for item in message['content'] -%}\n"
    "            {%- if item['type'] == 'image' -%}\n"
    "                {{ '<start_of_image>' }}\n"
    "            {%- elif item['type'] == 'text' -%}\n"
    "                {{ item['text'] | trim }}\n"
    "            {%- endif -%}\n"
    "        {%- endfor -%}\n"
    "    {%- else -%}\n"
    '        {{ raise_exception("Invalid content type") }}\n'
    "    {%- endif -%}\n"
    "    {{ '<end_of_turn>\n' }}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "    {{'<start_of_turn>model\n'}}\n"
    "{%- endif -%}\n"
)
MISTRAL_V03 = (
    '{%- if messages[0]["role"] == "system" %}\n'
    '    {%- set system_message = messages[0]["content"] %}\n'
    "    {%- set loop_messages = messages[1:] %}\n"
    "{%- else %}\n"
    "    {%- set loop_messages = messages %}\n"
    "{%- endif %}\n"
    "{{- bos_token }}\n"
    "{%- for message in loop_messages %}\n"
    '    {%- if (message["role"] == "user") != (loop.index0 % 2 == 0) %}\n'
    '        {{- raise_exception("After the optional system message, conversation roles must '
    'alternate user/assistant/user/assistant/...") }}\n'
    "    {%- endif %}\n"
    '    {%- if message["role"] == "user" %}\n'
    "        {%- if loop.last and system_message is defined %}\n"
    '            {{- "[INST] " + system_message + "\\n\\n" + message["content"] + "[/INST]" }}\n'
    "        {%- else %}\n"
    '            {{- "[INST] " + message["content"] + "[/INST]" }}\n'
    "        {%- endif %}\n"
    '    {%- elif message["role"] == "assistant" %}\n'
    '        {{- " " + message["content"]|trim + eos_token}}\n'
    "    {%- else %}\n"
    '        {{- raise_exception("Only user and assistant roles are supported, with the exception '
    'of an initial optional system message!") }}\n'
    "    {%- endif %}\n"
    "{%- endfor %}\n"
)
QWEN25 = (
    "{%- if messages[0]['role'] == 'system' %}\n"
    "    {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n"
    "{%- else %}\n"
    "    {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
    "assistant.<|im_end|>\\n' }}\n"
    "{%- endif %}\n"
    "{%- for message in messages %}\n"
    '    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or '
    '(message.role == "assistant" and not message.tool_calls) %}\n'
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' "
    "+ '\\n' }}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n"
    "{%- endif %}\n"
)
# the DeepSeek-R1-Distill-Qwen template the project's tiny Qwen judge carries
DEEPSEEK_R1 = (ROOT / "reward_service" / "testing" / "deepseek_r1_distill_qwen.jinja").read_text()

# (template, bos, eos, does the template keep the system message apart from the user's text)
TEMPLATES = {
    "gemma-3": (GEMMA3, "<bos>", "<end_of_turn>", False),
    "mistral-v0.3": (MISTRAL_V03, "<s>", "</s>", False),
    "deepseek-r1": (DEEPSEEK_R1, "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", True),
    "qwen2.5": (QWEN25, "", "<|im_end|>", True),
}
# U2 has a blank line and a double space: contents are read back as written
SYSTEM, U1, A1, U2 = "Answer in one line.", "What is 2+2?", "4.", "And  3+3?\n\nShow it."


def renderer(tokenizer: Any, name: str) -> Any:
    template, bos, eos, _ = TEMPLATES[name]

    def render(messages: list[dict[str, str]]) -> str:
        return str(
            tokenizer.apply_chat_template(
                messages,
                chat_template=template,
                bos_token=bos,
                eos_token=eos,
                tokenize=False,
                add_generation_prompt=True,
            )
        )

    return render


@pytest.mark.parametrize("name", list(TEMPLATES))
def test_conversation_read_by_the_template_and_by_markers(tokenizer: Any, name: str) -> None:
    render = renderer(tokenizer, name)
    reader = TemplateReader(render)
    separate_system = TEMPLATES[name][3]
    single = render([{"role": "user", "content": U2}])
    multi = render(
        [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": U1},
            {"role": "assistant", "content": A1},
            {"role": "user", "content": U2},
        ]
    )
    for read in (reader.read, conversation_by_markers):
        one = read(single)
        assert one is not None and one.query == U2.strip(), (read, single)
        many = read(multi)
        assert many is not None, (read, multi)
        if separate_system:
            assert many.query == U2.strip()
            assert many.history[-3:] == (
                Turn("system", SYSTEM),
                Turn("user", U1),
                Turn("assistant", A1),
            )
        else:  # the template writes the system message into a user turn: it is read there
            assert SYSTEM in (many.query + many.history[0].content)
            assert many.query.endswith(U2.strip()) and many.history[-1] == Turn("assistant", A1)
    # the template's own reading leaves out what the template adds by itself (Qwen's default
    # system prompt), which the markers cannot tell from a user's
    assert reader.read(single) == conversation_of(single, reader)
    assert reader.read(single).history == ()  # type: ignore[union-attr]


@pytest.mark.parametrize("name", list(TEMPLATES))
def test_response_cut_from_the_query_as_openrlhf_decodes_it(tokenizer: Any, name: str) -> None:
    prompt = renderer(tokenizer, name)([{"role": "user", "content": U1}])
    eos = TEMPLATES[name][2]
    assert response_of(prompt + " It is 4. " + eos, prompt) == "It is 4."


def test_a_prompt_the_template_did_not_render_falls_back_to_markers(tokenizer: Any) -> None:
    reader = TemplateReader(renderer(tokenizer, "gemma-3"))
    chatml = "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n"
    assert reader.read(chatml) is None
    assert conversation_of(chatml, reader).query == "Hi there"
    plain = "Question: why?\nAnswer:"
    assert conversation_of(plain, reader).query == plain.strip()


VICUNA = (  # a template no marker table knows (Vicuna v1.1 style)
    "{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] + ' ' }}"
    "{% elif m['role'] == 'user' %}{{ 'USER: ' + m['content'] + ' ' }}"
    "{% else %}{{ 'ASSISTANT: ' + m['content'] + eos_token }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


def test_any_template_is_read_by_its_own_rendering(tokenizer: Any) -> None:
    def render(messages: list[dict[str, str]]) -> str:
        return str(
            tokenizer.apply_chat_template(
                messages, chat_template=VICUNA, tokenize=False, add_generation_prompt=True
            )
        )

    reader = TemplateReader(render)
    messages = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": U1},
        {"role": "assistant", "content": A1},
        {"role": "user", "content": U2},
    ]
    prompt = render(messages)
    conversation = conversation_of(prompt, reader)
    assert conversation.query == U2
    assert conversation.history == (Turn("system", SYSTEM), Turn("user", U1), Turn("assistant", A1))
    assert conversation_of(prompt).query == prompt.strip()  # the markers alone know nothing here
    # more exchanges than the reader rendered: no reading at all, rather than one turn
    # swallowing the others
    assert TemplateReader(render, max_exchanges=0).read(prompt) is None


async def test_agent_reads_the_prompt_by_the_policy_template(
    scripted: Stack, rollout: Rollout, tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agent (OpenRLHF's loader and rollout) hands the judge the conversation as the policy's
    Qwen2.5 template wrote it: the query and history, without template markup or the default
    system prompt the template adds by itself."""
    qwen_tokenizer = copy.deepcopy(tokenizer)
    qwen_tokenizer.chat_template = QWEN25
    seen = []
    judge = scripted.runner.script

    def recording(task: Any) -> Any:
        seen.append(task.pair)
        return judge(task)

    scripted.runner.script = recording
    monkeypatch.setenv("RRM_ADDRESS", address_of(scripted))
    executor = rollout.load_agent_executor(str(AGENT_FILE))
    actor = rollout.actor(executor, ScriptedPolicy(qwen_tokenizer, ["Six.", "It is 6."]))
    messages = [
        {"role": "user", "content": U1},
        {"role": "assistant", "content": A1},
        {"role": "user", "content": U2},
    ]
    prompt = qwen_tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True
    )
    outputs = await generate_samples(actor, qwen_tokenizer, prompt, 2, "")
    assert all(o["reward"] is not None for o in outputs)
    assert {p.query for p in seen} == {U2.strip()}
    histories = {tuple((t.role, t.content) for t in p.history) for p in seen}
    assert histories == {(("user", U1), ("assistant", A1))}
