"""Submit a training object with the official `kubernetes` client, then follow it: poll its status,
stream the logs of its pods, and end with its outcome.

Both kinds run their program in pods labelled `batch.kubernetes.io/job-name=<name>`: the DPO Job's
own pods, and for a RayJob the submitter Job that KubeRay names after the RayJob and that runs
`ray job submit`, which tails the driver's output.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any, cast

import urllib3
from kubernetes import client, watch
from kubernetes.client.rest import ApiException
from rich.console import Console
from rich.text import Text

Obj = dict[str, Any]
RAY_GROUP, RAY_VERSION, RAYJOBS = "ray.io", "v1", "rayjobs"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
LOGGABLE_PHASES = ("Running", "Succeeded", "Failed")


TRANSIENT_STATUSES = (429, 500, 502, 503, 504)
MAX_TRANSIENT_FAILURES = 10  # consecutive failed polls before following gives up


class LaunchError(RuntimeError):
    """The Kubernetes API refused or lost the object (not a failed training run)."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True, slots=True)
class JobState:
    phase: str
    done: bool = False
    succeeded: bool = False
    message: str = ""


def rayjob_state(obj: Obj) -> JobState:
    """KubeRay: Complete + SUCCEEDED is success; Failed, or Complete + STOPPED, is failure."""
    status = obj.get("status") or {}
    deployment = status.get("jobDeploymentStatus") or "New"
    job = status.get("jobStatus") or ""
    phase = f"{deployment} (Ray job {job})" if job else deployment
    message = " ".join(str(status[k]) for k in ("reason", "message") if status.get(k))
    if deployment == "Complete":
        return JobState(phase, done=True, succeeded=job == "SUCCEEDED", message=message)
    if deployment == "Failed":
        return JobState(phase, done=True, message=message)
    return JobState(phase, message=message)


def batch_job_state(obj: Obj) -> JobState:
    """batch/v1: the terminal conditions Complete / Failed decide; until then active pods."""
    status = obj.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("status") != "True":
            continue
        message = " ".join(str(cond[k]) for k in ("reason", "message") if cond.get(k))
        if cond.get("type") == "Complete":
            return JobState("Complete", done=True, succeeded=True, message=message)
        if cond.get("type") == "Failed":
            return JobState("Failed", done=True, message=message)
    active = status.get("active") or 0
    failed = status.get("failed") or 0
    phase = f"Running ({active} active)" if active else "Pending"
    return JobState(f"{phase}, {failed} failed" if failed else phase)


def _api_error(action: str, err: ApiException) -> LaunchError:
    """The API server's own message (its Status object), else the start of the body."""
    body = (err.body or "").strip()
    try:
        detail = str(json.loads(body)["message"])
    except (ValueError, KeyError, TypeError):
        detail = body[:500]
    return LaunchError(
        f"{action}: {err.status} {err.reason}: {detail}",
        transient=err.status in TRANSIENT_STATUSES,
    )


class Launcher:
    """One RayJob or Job: create it, then follow it to its end."""

    def __init__(
        self,
        api_client: client.ApiClient,
        console: Console,
        *,
        poll_interval_s: float = 5.0,
        log_drain_s: float = 30.0,
    ) -> None:
        self.api = api_client
        self.custom = client.CustomObjectsApi(api_client)
        self.batch = client.BatchV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.console = console
        self.poll_interval_s = poll_interval_s
        self.log_drain_s = log_drain_s
        self._streams: dict[str, threading.Thread] = {}

    def submit(self, obj: Obj) -> None:
        meta = obj["metadata"]
        try:
            if obj["kind"] == "RayJob":
                self.custom.create_namespaced_custom_object(
                    RAY_GROUP, RAY_VERSION, meta["namespace"], RAYJOBS, body=obj
                )
            else:  # the client sends a dict body as it is
                self.batch.create_namespaced_job(meta["namespace"], body=obj)  # type: ignore[arg-type]
        except ApiException as err:
            hint = " (delete it or choose another --name)" if err.status == 409 else ""
            raise _api_error(f"creating {obj['kind']} {meta['name']}{hint}", err) from None
        except ValueError as err:  # the client's own model validation (kubernetes >= 35)
            raise LaunchError(f"the kubernetes client refused {obj['kind']}: {err}") from None
        self.console.print(f"created {obj['kind']} {meta['namespace']}/{meta['name']}")

    def state(self, kind: str, namespace: str, name: str) -> JobState:
        try:
            return self._read_state(kind, namespace, name)
        except urllib3.exceptions.HTTPError as err:  # connection reset, timeout: try again
            raise LaunchError(f"reading {kind} {namespace}/{name}: {err}", transient=True) from None

    def _read_state(self, kind: str, namespace: str, name: str) -> JobState:
        try:
            if kind == "RayJob":
                obj = self.custom.get_namespaced_custom_object(
                    RAY_GROUP, RAY_VERSION, namespace, RAYJOBS, name
                )
                return rayjob_state(cast(Obj, obj))
            job = self.batch.read_namespaced_job(name=name, namespace=namespace)
            return batch_job_state(self.api.sanitize_for_serialization(job))
        except ApiException as err:
            raise _api_error(f"reading {kind} {namespace}/{name}", err) from None

    def follow(self, kind: str, namespace: str, name: str) -> JobState:
        started = time.monotonic()
        last_phase = ""
        with self.console.status(f"{kind} {namespace}/{name}") as status:
            failures = 0
            while True:
                try:
                    state = self.state(kind, namespace, name)
                    if state.phase != last_phase:
                        self.console.print(f"{kind} {name}: {state.phase}", style="bold")
                        last_phase = state.phase
                    waiting = self._stream_new_pods(namespace, name)
                    failures = 0
                except LaunchError as err:
                    failures += 1
                    if not err.transient or failures >= MAX_TRANSIENT_FAILURES:
                        raise
                    self.console.print(Text(f"warning: {err} (retrying)", style="yellow"))
                    time.sleep(self.poll_interval_s)
                    continue
                elapsed = int(time.monotonic() - started)
                status.update(
                    f"{kind} {namespace}/{name}: {state.phase}"
                    f"{', ' + waiting if waiting else ''} [{elapsed // 60}m{elapsed % 60:02d}s]"
                )
                if state.done:
                    break
                time.sleep(self.poll_interval_s)
            self._stream_new_pods(namespace, name)  # a pod that ran and ended between two polls
            status.update(f"{kind} {namespace}/{name}: {state.phase}, draining logs")
            deadline = time.monotonic() + self.log_drain_s
            for thread in self._streams.values():
                thread.join(max(0.0, deadline - time.monotonic()))
        return state

    def _stream_new_pods(self, namespace: str, job_name: str) -> str:
        """Start a log stream for every pod of the job that has started; describe the others."""
        try:
            pods = self.core.list_namespaced_pod(
                namespace, label_selector=f"{JOB_NAME_LABEL}={job_name}"
            ).items
        except ApiException as err:
            raise _api_error(f"listing the pods of {job_name}", err) from None
        except urllib3.exceptions.HTTPError as err:
            raise LaunchError(f"listing the pods of {job_name}: {err}", transient=True) from None
        waiting = []
        for pod in pods:
            name = str(pod.metadata.name if pod.metadata else "")
            phase = pod.status.phase if pod.status else None
            if name in self._streams:
                continue
            if phase not in LOGGABLE_PHASES:
                waiting.append(f"pod {name} {phase or 'Pending'}")
                continue
            thread = threading.Thread(
                target=self._stream_logs, args=(namespace, name), name=f"logs-{name}", daemon=True
            )
            self._streams[name] = thread
            thread.start()
        return ", ".join(waiting)

    def _stream_logs(self, namespace: str, pod: str) -> None:
        self.console.print(Text(f"--- logs of pod {pod} ---", style="dim"))
        try:
            for line in watch.Watch().stream(
                self.core.read_namespaced_pod_log, name=pod, namespace=namespace
            ):
                self.console.print(Text(line), soft_wrap=True, highlight=False)
        except ApiException as err:
            self.console.print(Text(f"logs of {pod} unavailable: {err.status} {err.reason}"))
        except urllib3.exceptions.HTTPError as err:  # the status polls go on; only the log stops
            self.console.print(Text(f"log stream of {pod} ended: {err}", style="yellow"))
