"""Every command line the launcher builds goes through OpenRLHF 0.11.2's own parser and checks (the
`__main__` block of train_ppo_ray.py / train_dpo.py, run as written up to `train(args)`), and the
parsed values are the configured ones."""

from __future__ import annotations

import importlib.metadata

import pytest

from policy_adapter.launch.config import LaunchConfig, RewardMode
from policy_adapter.launch.openrlhf_args import (
    DPO_MODULE,
    PPO_MODULE,
    dpo_argv,
    job_dir,
    module_args,
    ppo_argv,
)
from policy_adapter.launch.openrlhf_check import OpenRLHFArgsError, check_args, parser_flags


def test_the_installed_openrlhf_is_the_target_version() -> None:
    assert importlib.metadata.version("openrlhf") == "0.11.2"


def flags(argv: list[str]) -> set[str]:
    return {word for word in argv if word.startswith("--")}


def test_ppo_flags_exist_and_parse(variant: tuple[str, LaunchConfig]) -> None:
    _, cfg = variant
    argv = ppo_argv(cfg)
    assert argv[:3] == ["python3", "-m", PPO_MODULE]
    module, args = module_args(argv)
    assert flags(args) - parser_flags(module) == set()
    ns = check_args(module, args)

    ppo = cfg.ppo
    assert ppo is not None
    assert ns.actor.model_name_or_path == ppo.policy
    assert ns.rollout.n_samples_per_prompt == ppo.rollout.n_samples_per_prompt
    assert ns.rollout.batch_size == ppo.rollout.batch_size
    assert ns.rollout.max_new_tokens == ppo.rollout.max_new_tokens
    assert ns.train.batch_size == ppo.train.batch_size
    assert ns.actor.adam.lr == ppo.train.actor_learning_rate
    assert ns.algo.advantage.estimator == ppo.algo.advantage_estimator
    assert ns.algo.kl.init_coef == ppo.algo.kl_init_coef
    assert ns.data.prompt_dataset == ppo.data.prompt_dataset
    assert ns.data.apply_chat_template is ppo.data.apply_chat_template
    assert ns.vllm.num_engines == ppo.placement.vllm_engines
    assert ns.train.colocate_all is ppo.placement.colocate_all
    assert ns.ds.zero_stage == ppo.deepspeed.zero_stage
    assert ns.ckpt.output_dir == f"{job_dir(cfg, 'ppo')}/model"
    assert ns.ckpt.load_enable is ppo.checkpoints.resume
    if ppo.reward.mode is RewardMode.AGENT:
        assert ns.train.agent_func_path == ppo.reward.file
        assert ns.reward.remote_url == ["agent"]  # what OpenRLHF sets for an agent
    elif ppo.reward.mode is RewardMode.REWARD_FUNC:
        assert ns.reward.remote_url == [ppo.reward.file]
        assert ns.data.label_key == ppo.data.label_key
    else:
        assert ns.reward.remote_url == [cfg.reward_service.remote_url]
    # gae trains a critic (initialised from the policy); group estimators do not
    expect_critic = ppo.policy if ppo.algo.advantage_estimator == "gae" else None
    assert ns.critic.model_name_or_path == expect_critic


def test_dpo_flags_exist_and_parse(variant: tuple[str, LaunchConfig]) -> None:
    _, cfg = variant
    argv = dpo_argv(cfg)
    dpo = cfg.dpo
    assert dpo is not None
    assert argv[:5] == ["deepspeed", "--num_gpus", str(dpo.resources.gpus), "--module", DPO_MODULE]
    module, args = module_args(argv)
    assert flags(args) - parser_flags(module) == set()
    ns = check_args(module, args)
    assert ns.model.model_name_or_path == dpo.policy
    assert ns.ref.model_name_or_path == (dpo.ref or dpo.policy)
    assert ns.data.dataset == dpo.data.dataset
    assert (ns.data.prompt_key, ns.data.chosen_key, ns.data.rejected_key) == (
        "prompt",
        "chosen",
        "rejected",
    )
    assert ns.data.apply_chat_template is dpo.data.apply_chat_template
    assert ns.adam.lr == dpo.train.learning_rate
    assert ns.model.beta == dpo.train.beta
    assert ns.ckpt.output_dir == f"{job_dir(cfg, 'dpo')}/model"


def test_the_checker_is_not_vacuous() -> None:
    """Old-style flags, misspellings and OpenRLHF's own asserts are refused."""
    with pytest.raises(OpenRLHFArgsError, match="unrecognized arguments: --remote_rm_url"):
        check_args(PPO_MODULE, ["--remote_rm_url", "http://rm/get_reward"])
    with pytest.raises(OpenRLHFArgsError, match="invalid choice: 'grpo'"):
        check_args(PPO_MODULE, ["--algo.advantage.estimator", "grpo"])
    with pytest.raises(OpenRLHFArgsError, match="requires n_samples_per_prompt > 1"):
        check_args(
            PPO_MODULE,
            ["--actor.model_name_or_path", "m", "--reward.remote_url", "http://rm",
             "--algo.advantage.estimator", "group_norm", "--rollout.n_samples_per_prompt", "1"],
        )  # fmt: skip
    with pytest.raises(OpenRLHFArgsError, match=r"unrecognized arguments: --data\.label_key"):
        check_args(DPO_MODULE, ["--data.label_key", "x"])


def test_every_flag_the_launcher_can_emit_is_in_the_parsers() -> None:
    """Switch every optional branch on at once (a union over the variants would miss none)."""
    from tests.launch.configs import VARIANTS

    emitted_ppo: set[str] = set()
    emitted_dpo: set[str] = set()
    for raw in VARIANTS.values():
        cfg = LaunchConfig.model_validate(raw)
        emitted_ppo |= flags(module_args(ppo_argv(cfg))[1])
        emitted_dpo |= flags(module_args(dpo_argv(cfg))[1])
    assert emitted_ppo <= parser_flags(PPO_MODULE)
    assert emitted_dpo <= parser_flags(DPO_MODULE)
    # the flags the brief names are among them
    assert {
        "--reward.remote_url",
        "--train.agent_func_path",
        "--rollout.n_samples_per_prompt",
        "--algo.advantage.estimator",
    } <= emitted_ppo
    assert {
        "--data.dataset",
        "--data.prompt_key",
        "--data.chosen_key",
        "--data.rejected_key",
    } <= emitted_dpo
