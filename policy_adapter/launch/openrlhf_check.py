"""Check a command line against the installed OpenRLHF's own argument parser and its checks.

`train_ppo_ray` and `train_dpo` import ray / deepspeed at the top, which a CPU machine lacks, and
build their parser inside `if __name__ == "__main__":`. So the block is taken from the module's
source and run as written (parse_args, hierarchize, the asserts) up to its final `train(args)`:
the flags, their types and choices, and the cross-flag rules are OpenRLHF's, not a copy of them.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import datetime
import importlib.metadata
import importlib.util
import io
import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

OPENRLHF_VERSION = "0.11.2"


class OpenRLHFArgsError(ValueError):
    """OpenRLHF's parser or one of its checks refused the command line."""


def installed_version() -> str | None:
    try:
        return importlib.metadata.version("openrlhf")
    except importlib.metadata.PackageNotFoundError:
        return None


def _origin(module: str) -> str:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(module)
    return spec.origin


def _main_block(module: str) -> Any:
    origin = _origin(module)
    tree = ast.parse(Path(origin).read_text(encoding="utf-8"))
    mains = [n for n in tree.body if isinstance(n, ast.If) and "__main__" in ast.unparse(n.test)]
    if len(mains) != 1:
        raise RuntimeError(f"{module}: expected one __main__ block")
    *checks, last = mains[0].body
    if ast.unparse(last) != "train(args)":
        raise RuntimeError(f"{module}: the __main__ block no longer ends with train(args)")
    return compile(ast.Module(body=checks, type_ignores=[]), origin, "exec")


def parser_flags(module: str) -> set[str]:
    """Every option string the module's parser defines (for reports and static checks)."""
    found: set[str] = set()
    tree = ast.parse(Path(_origin(module)).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "add_argument"
        ):
            for arg in node.args:
                if isinstance(arg, ast.Constant) and str(arg.value).startswith("--"):
                    found.add(str(arg.value))
                elif isinstance(arg, ast.JoinedStr):  # f"--{prefix}.optim" in a loop
                    found.update(_expand_prefixes(arg))
    return found


def _expand_prefixes(node: ast.JoinedStr) -> set[str]:
    out = {""}
    for part in node.values:
        if isinstance(part, ast.Constant):
            out = {o + str(part.value) for o in out}
        else:  # the only loop variable in these files: for prefix in ("actor", "critic")
            out = {o + p for o in out for p in ("actor", "critic")}
    return {o for o in out if o.startswith("--")}


def check_args(module: str, args: list[str]) -> SimpleNamespace:
    """Run the module's `__main__` block on `args` without training; the hierarchized args.

    Raises OpenRLHFArgsError with OpenRLHF's own message (usage error or failed assert)."""
    code = _main_block(module)
    namespace: dict[str, Any] = {
        "argparse": argparse,
        "datetime": datetime.datetime,
        "os": os,
        "__name__": "__main__",
    }
    out, err = io.StringIO(), io.StringIO()
    saved = sys.argv
    sys.argv = [module, *args]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            exec(code, namespace)
    except SystemExit as exc:
        raise OpenRLHFArgsError(err.getvalue().strip() or f"exit {exc.code}") from None
    except AssertionError as exc:
        raise OpenRLHFArgsError(f"{module}: {exc}") from None
    finally:
        sys.argv = saved
    parsed: SimpleNamespace = namespace["args"]
    return parsed
