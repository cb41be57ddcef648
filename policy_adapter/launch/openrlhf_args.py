"""OpenRLHF 0.11.2 command lines (dotted flags only) and the trainer-side environment, from a
LaunchConfig. tests/launch runs every argv through OpenRLHF's own parser and checks."""

from __future__ import annotations

from typing import Literal, TypeVar

from policy_adapter.launch.config import (
    DPO,
    PPO,
    Checkpoints,
    DeepSpeed,
    LaunchConfig,
    RewardMode,
)

T = TypeVar("T")

PPO_MODULE = "openrlhf.cli.train_ppo_ray"
DPO_MODULE = "openrlhf.cli.train_dpo"


def _num(value: float) -> str:
    """Shortest exact form, without a trailing `.0` (Helm prints 120.0 as 120 too)."""
    text = repr(value) if isinstance(value, float) else str(value)
    return text.removesuffix(".0")


class _Args:
    def __init__(self) -> None:
        self.argv: list[str] = []

    def opt(self, flag: str, value: object) -> None:
        self.argv += [flag, _num(value) if isinstance(value, int | float) else str(value)]

    def flag(self, flag: str, on: bool = True) -> None:
        if on:
            self.argv.append(flag)


def job_dir(cfg: LaunchConfig, kind: Literal["ppo", "dpo"]) -> str:
    """Where one job writes: the model, its checkpoints and TensorBoard logs."""
    return f"{cfg.storage.checkpoints.mount_path.rstrip('/')}/{cfg.job_name(kind)}"


def _deepspeed(a: _Args, ds: DeepSpeed, gradient_checkpointing_flag: str) -> None:
    a.opt("--ds.zero_stage", ds.zero_stage)
    a.opt("--ds.param_dtype", ds.param_dtype)
    a.flag(gradient_checkpointing_flag, ds.gradient_checkpointing)
    a.flag("--ds.packing_samples", ds.packing_samples)
    a.flag("--ds.adam_offload", ds.adam_offload)
    if ds.attn_implementation:
        a.opt("--ds.attn_implementation", ds.attn_implementation)


def _checkpoints(a: _Args, ck: Checkpoints, out: str) -> None:
    a.opt("--ckpt.output_dir", f"{out}/model")
    a.opt("--ckpt.path", f"{out}/ckpt")
    a.opt("--ckpt.save_steps", ck.save_steps)
    a.opt("--ckpt.max_num", ck.max_num)
    a.flag("--ckpt.save_hf", ck.save_hf)
    a.flag("--ckpt.load_enable", ck.resume)
    a.opt("--logger.tensorboard_dir", f"{out}/tensorboard")


def ppo_argv(cfg: LaunchConfig) -> list[str]:
    """`python3 -m openrlhf.cli.train_ppo_ray ...` as an argument list."""
    ppo: PPO = _require(cfg.ppo, "ppo")
    a = _Args()
    p = ppo.placement
    a.opt("--actor.num_nodes", p.actor_nodes)
    a.opt("--actor.num_gpus_per_node", p.actor_gpus_per_node)
    a.opt("--ref.num_nodes", p.ref_nodes)
    a.opt("--ref.num_gpus_per_node", p.ref_gpus_per_node)
    a.opt("--vllm.num_engines", p.vllm_engines)
    a.opt("--vllm.tensor_parallel_size", p.vllm_tensor_parallel_size)
    a.opt("--vllm.gpu_memory_utilization", p.vllm_gpu_memory_utilization)
    if p.colocate_all:
        a.flag("--train.colocate_all")
        a.flag("--vllm.enable_sleep")
        a.flag("--ds.enable_sleep")
    a.opt("--actor.model_name_or_path", ppo.policy)

    match ppo.reward.mode:
        case RewardMode.AGENT:
            a.opt("--train.agent_func_path", ppo.reward.file)
        case RewardMode.REWARD_FUNC:
            a.opt("--reward.remote_url", ppo.reward.file)
        case RewardMode.REMOTE_RM:
            a.opt("--reward.remote_url", cfg.reward_service.remote_url)

    d = ppo.data
    a.opt("--data.prompt_dataset", d.prompt_dataset)
    a.opt("--data.input_key", d.input_key)
    if d.label_key:
        a.opt("--data.label_key", d.label_key)
    a.flag("--data.apply_chat_template", d.apply_chat_template)
    a.opt("--data.max_len", d.max_len)
    if d.max_samples:
        a.opt("--data.max_samples", d.max_samples)

    r = ppo.rollout
    a.opt("--rollout.n_samples_per_prompt", r.n_samples_per_prompt)
    a.opt("--rollout.batch_size", r.batch_size)
    a.opt("--rollout.micro_batch_size", r.micro_batch_size)
    a.opt("--rollout.max_new_tokens", r.max_new_tokens)
    a.opt("--rollout.temperature", r.temperature)
    a.opt("--rollout.top_p", r.top_p)

    t = ppo.train
    a.opt("--train.batch_size", t.batch_size)
    a.opt("--train.micro_batch_size", t.micro_batch_size)
    a.opt("--train.max_epochs", t.max_epochs)
    a.opt("--train.num_episodes", t.num_episodes)
    a.opt("--train.seed", t.seed)
    a.opt("--actor.adam.lr", t.actor_learning_rate)

    g = ppo.algo
    a.opt("--algo.advantage.estimator", g.advantage_estimator)
    if g.advantage_estimator == "gae":
        a.opt("--critic.adam.lr", t.critic_learning_rate)
    a.opt("--algo.kl.init_coef", g.kl_init_coef)
    a.flag("--algo.kl.use_loss", g.kl_use_loss)
    a.opt("--algo.kl.estimator", g.kl_estimator)

    _deepspeed(a, ppo.deepspeed, "--actor.gradient_checkpointing_enable")
    _checkpoints(a, ppo.checkpoints, job_dir(cfg, "ppo"))
    return ["python3", "-m", PPO_MODULE, *a.argv, *ppo.extra_args]


def dpo_argv(cfg: LaunchConfig) -> list[str]:
    """`deepspeed --module openrlhf.cli.train_dpo ...` as an argument list."""
    dpo: DPO = _require(cfg.dpo, "dpo")
    a = _Args()
    a.opt("--model.model_name_or_path", dpo.policy)
    if dpo.ref:
        a.opt("--ref.model_name_or_path", dpo.ref)
    d = dpo.data
    a.opt("--data.dataset", d.dataset)
    a.opt("--data.prompt_key", d.prompt_key)
    a.opt("--data.chosen_key", d.chosen_key)
    a.opt("--data.rejected_key", d.rejected_key)
    a.flag("--data.apply_chat_template", d.apply_chat_template)
    a.opt("--data.max_len", d.max_len)
    if d.max_samples:
        a.opt("--data.max_samples", d.max_samples)
    t = dpo.train
    a.opt("--train.batch_size", t.batch_size)
    a.opt("--train.micro_batch_size", t.micro_batch_size)
    a.opt("--train.max_epochs", t.max_epochs)
    a.opt("--train.seed", t.seed)
    a.opt("--adam.lr", t.learning_rate)
    a.opt("--model.beta", t.beta)
    _deepspeed(a, dpo.deepspeed, "--model.gradient_checkpointing_enable")
    _checkpoints(a, dpo.checkpoints, job_dir(cfg, "dpo"))
    launcher = ["deepspeed", "--num_gpus", str(dpo.resources.gpus), "--module", DPO_MODULE]
    return [*launcher, *a.argv, *dpo.extra_args]


def module_args(argv: list[str]) -> tuple[str, list[str]]:
    """(module, its arguments) of a command line built here."""
    for flag in ("-m", "--module"):
        if flag in argv:
            i = argv.index(flag)
            return argv[i + 1], argv[i + 2 :]
    raise ValueError(f"no module in {argv[:4]}")


def rrm_env(cfg: LaunchConfig) -> dict[str, str]:
    """The `RRM_*` settings the adapter files read inside the vLLM engine actors (Ray runtime env).
    The bearer token is not here: it comes from its Secret (`RRM_TOKEN`) on the pods."""
    ppo = _require(cfg.ppo, "ppo")
    env = {"PYTHONUNBUFFERED": "1"}
    if ppo.reward.mode is not RewardMode.REMOTE_RM:
        rs = cfg.reward_service
        env["RRM_ADDRESS"] = rs.address
        env["RRM_GROUP_TIMEOUT_S"] = _num(rs.group_timeout_seconds)
        if ppo.reward.mode is RewardMode.AGENT:
            env["RRM_N_SAMPLES_PER_PROMPT"] = str(ppo.rollout.n_samples_per_prompt)
        if rs.strategy:
            env["RRM_STRATEGY"] = rs.strategy
        if rs.votes:
            env["RRM_VOTES"] = str(rs.votes)
        if rs.max_reasoning_tokens:
            env["RRM_MAX_REASONING_TOKENS"] = str(rs.max_reasoning_tokens)
    return {**env, **ppo.env}


def _require(section: T | None, name: str) -> T:
    if section is None:
        raise ValueError(f"the configuration has no `{name}:` section")
    return section
