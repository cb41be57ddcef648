"""Every OpenRLHF command line in docs/openrlhf.md goes through OpenRLHF 0.11.2's own argument
parser and checks: the `if __name__ == "__main__":` block of `train_ppo_ray.py` / `train_dpo.py`
runs as written (parse_args, hierarchize, its asserts), all but its final `train(args)`."""

from __future__ import annotations

import argparse
import ast
import datetime
import importlib.util
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "openrlhf.md"


def command_lines(module: str) -> list[list[str]]:
    """The arguments after `-m MODULE` / `--module MODULE` in the doc's bash blocks."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line)
            for i, word in enumerate(words[:-1]):
                if word in ("-m", "--module") and words[i + 1] == module:
                    found.append(words[i + 2 :])
    return found


def run_openrlhf_main(module: str, argv: list[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    [main] = [n for n in tree.body if isinstance(n, ast.If) and "__main__" in ast.unparse(n.test)]
    *checks, last = main.body
    assert ast.unparse(last) == "train(args)"
    code = compile(ast.Module(body=checks, type_ignores=[]), spec.origin, "exec")
    namespace: dict[str, Any] = {"argparse": argparse, "datetime": datetime.datetime, "os": os}
    monkeypatch.setattr(sys, "argv", [module, *argv])
    exec(code, namespace)
    return namespace["args"]


PPO = command_lines("openrlhf.cli.train_ppo_ray")
DPO = command_lines("openrlhf.cli.train_dpo")


def test_the_doc_has_every_command() -> None:
    assert len(PPO) == 3 and len(DPO) == 1


@pytest.mark.parametrize("argv", PPO, ids=["agent", "reward-func", "remote-rm"])
def test_ppo_command_lines_parse_in_openrlhf(
    argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    args = run_openrlhf_main("openrlhf.cli.train_ppo_ray", argv, monkeypatch)
    if args.train.agent_func_path:
        assert args.train.agent_func_path.endswith("policy_adapter/openrlhf_agent.py")
        assert args.reward.remote_url == ["agent"]  # OpenRLHF's marker for agent mode
    else:
        [url] = args.reward.remote_url
        assert url.endswith("openrlhf_reward_func.py") or url.endswith("/get_reward")
    assert args.rollout.n_samples_per_prompt > 1
    assert args.critic.model_name_or_path is None  # group estimators: no critic


def test_dpo_command_line_parses_in_openrlhf(monkeypatch: pytest.MonkeyPatch) -> None:
    [argv] = DPO
    args = run_openrlhf_main("openrlhf.cli.train_dpo", argv, monkeypatch)
    assert args.data.prompt_key == "prompt" and args.data.apply_chat_template
    assert (args.data.chosen_key, args.data.rejected_key) == ("chosen", "rejected")


def test_old_flag_names_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit):
        run_openrlhf_main("openrlhf.cli.train_ppo_ray", ["--remote_rm_url", "x"], monkeypatch)
