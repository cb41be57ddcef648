"""How a RayJob's and a Job's status read as an outcome (pure functions, KubeRay's and
Kubernetes' own status fields)."""

from __future__ import annotations

from typing import Any

import pytest

from policy_adapter.launch.follow import JobState, batch_job_state, rayjob_state

RAYJOB = [
    ({}, JobState("New")),
    ({"jobDeploymentStatus": "Initializing"}, JobState("Initializing")),
    ({"jobDeploymentStatus": "Suspended"}, JobState("Suspended")),  # Kueue: waits, not failed
    ({"jobDeploymentStatus": "Retrying"}, JobState("Retrying")),  # backoffLimit > 0
    (
        {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"},
        JobState("Running (Ray job RUNNING)"),
    ),
    (
        {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"},
        JobState("Complete (Ray job SUCCEEDED)", done=True, succeeded=True),
    ),
    (  # stopped by hand: complete, but no trained model to speak of
        {"jobDeploymentStatus": "Complete", "jobStatus": "STOPPED"},
        JobState("Complete (Ray job STOPPED)", done=True),
    ),
    (
        {"jobDeploymentStatus": "Failed", "reason": "DeadlineExceeded", "message": "past 60s"},
        JobState("Failed", done=True, message="DeadlineExceeded past 60s"),
    ),
]


@pytest.mark.parametrize(("status", "expected"), RAYJOB)
def test_rayjob_state(status: dict[str, Any], expected: JobState) -> None:
    assert rayjob_state({"status": status}) == expected


JOB = [
    ({}, JobState("Pending")),
    ({"active": 1}, JobState("Running (1 active)")),
    ({"active": 1, "failed": 1}, JobState("Running (1 active), 1 failed")),
    (  # success criteria met but pods still terminating: not yet Complete
        {"conditions": [{"type": "SuccessCriteriaMet", "status": "True"}]},
        JobState("Pending"),
    ),
    (
        {"conditions": [{"type": "Complete", "status": "True"}]},
        JobState("Complete", done=True, succeeded=True),
    ),
    (
        {"conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]},
        JobState("Failed", done=True, message="DeadlineExceeded"),
    ),
    ({"conditions": [{"type": "Failed", "status": "False"}]}, JobState("Pending")),
]


@pytest.mark.parametrize(("status", "expected"), JOB)
def test_batch_job_state(status: dict[str, Any], expected: JobState) -> None:
    assert batch_job_state({"status": status}) == expected
