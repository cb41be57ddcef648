"""The contract works from any language: a Node.js client built from the .proto alone calls the
real service, buf lints the protos, and buf's breaking-change check guards the released contract."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from reward_service.testing.serve_process import RunningService

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "clients" / "node"
BUF = NODE_DIR / "node_modules" / ".bin" / "buf"
RELEASED = ROOT / "proto" / "released" / "rrm.v1-0.1.0.binpb"


@pytest.fixture(autouse=True, scope="module")
def node_tools() -> None:
    assert BUF.exists(), "run `make node-setup` (npm ci in clients/node) first"


def test_node_client_calls_compare_and_rank(cpu_service: RunningService) -> None:
    env = dict(os.environ, RRM_ADDRESS=cpu_service.address)
    done = subprocess.run(
        ["node", "--test", "test/"],
        cwd=NODE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "# pass 4" in done.stdout and "# fail 0" in done.stdout


def test_buf_lint_passes() -> None:
    done = subprocess.run([str(BUF), "lint", "proto"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_contract_has_no_breaking_change_against_the_release() -> None:
    done = subprocess.run(
        [str(BUF), "breaking", "proto", "--against", str(RELEASED)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_breaking_check_catches_a_renumbered_field(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "proto", tmp_path / "proto", ignore=shutil.ignore_patterns("*.py*"))
    proto = tmp_path / "proto" / "rrm" / "v1" / "reward.proto"
    text = proto.read_text()
    assert "string response_a = 4;" in text
    proto.write_text(text.replace("string response_a = 4;", "string response_a = 40;"))
    done = subprocess.run(
        [str(BUF), "breaking", "proto", "--against", str(RELEASED)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert "response_a" in done.stdout + done.stderr
