"""Fixtures of the launch tests."""

from __future__ import annotations

import pytest

from policy_adapter.launch.config import LaunchConfig
from tests.launch.configs import VARIANTS


@pytest.fixture(params=sorted(VARIANTS))
def variant(request: pytest.FixtureRequest) -> tuple[str, LaunchConfig]:
    return request.param, LaunchConfig.model_validate(VARIANTS[request.param])
