"""Session-wide fixtures. Anything that loads a vLLM engine is shared: a load costs 20-45 s."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reward_service.testing.serve_process import RunningService, rrm_serve


@pytest.fixture(scope="session")
def cpu_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    """The real service on the CPU judge, started once per test session (`rrm serve`)."""
    log_dir = Path(tmp_path_factory.mktemp("rrm-serve"))
    with rrm_serve(log_dir, RRM_GATEWAY__METRICS_PORT="0") as service:
        yield service
    # SIGTERM must drain and exit cleanly (graceful shutdown), not crash or hang
    assert service.process.returncode == 0, service.log()[-3000:]
