"""TEST DOUBLE of the Kubernetes API server, for `rrm launch` tests on a machine without a cluster.

`FakeKubernetesApi` is NOT Kubernetes: a stdlib HTTP server on 127.0.0.1 (a free port) that answers
only the few endpoints the launcher calls (create a RayJob or a Job, read it, list its pods, follow
a pod's log), plays a scripted status sequence (one step per read), and records every object it
receives so a test can validate them against the real schemas. It validates nothing itself.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

Obj = dict[str, Any]


@dataclass
class Script:
    """What the double plays for every object created: `statuses[i]` answers the i-th successful
    read (the last repeats); the job's pod exists from read `pod_from` on, Running until the last
    status, then `final_pod_phase`; its log is `log_lines`, sent `log_delay_s` apart."""

    statuses: list[Obj]
    log_lines: list[str] = field(default_factory=list)
    pod_from: int = 1
    final_pod_phase: str = "Succeeded"
    log_delay_s: float = 0.01
    # reads (0-based, all reads counted) answered 503 Service Unavailable instead
    unavailable_reads: frozenset[int] = frozenset()


RAYJOB_SUCCEEDS = Script(
    statuses=[
        {},
        {"jobDeploymentStatus": "Initializing"},
        {"jobDeploymentStatus": "Running", "jobStatus": "PENDING"},
        {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"},
        {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"},
        {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"},
    ],
    log_lines=["Job submitted", "episode 1/1 step 1: reward 0.31", "Job 'raysubmit' succeeded"],
    pod_from=2,
)
RAYJOB_FAILS = Script(
    statuses=[
        {"jobDeploymentStatus": "Initializing"},
        {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"},
        {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"},
        {
            "jobDeploymentStatus": "Failed",
            "jobStatus": "FAILED",
            "reason": "AppFailed",
            "message": "Job entrypoint command failed with exit code 1",
        },
    ],
    log_lines=["Traceback (most recent call last):", "AssertionError: reward missing"],
    final_pod_phase="Failed",
)
JOB_SUCCEEDS = Script(
    statuses=[
        {},
        {"active": 1},
        {"active": 1},
        {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]},
    ],
    log_lines=["[rank0] Train epoch [1/1]", "[rank0] saved /checkpoints/model"],
)
JOB_FAILS = Script(
    statuses=[
        {"active": 1},
        {"active": 1},
        {
            "failed": 1,
            "conditions": [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "message": "Job has reached the specified backoff limit",
                }
            ],
        },
    ],
    log_lines=["torch.OutOfMemoryError: CUDA out of memory"],
    final_pod_phase="Failed",
)

ROUTES = [
    ("POST", r"/apis/ray\.io/v1/namespaces/(?P<ns>[^/]+)/rayjobs", "create"),
    ("GET", r"/apis/ray\.io/v1/namespaces/(?P<ns>[^/]+)/rayjobs/(?P<name>[^/]+)", "read"),
    ("POST", r"/apis/batch/v1/namespaces/(?P<ns>[^/]+)/jobs", "create"),
    ("GET", r"/apis/batch/v1/namespaces/(?P<ns>[^/]+)/jobs/(?P<name>[^/]+)", "read"),
    ("GET", r"/api/v1/namespaces/(?P<ns>[^/]+)/pods", "pods"),
    ("GET", r"/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<pod>[^/]+)/log", "log"),
]


@dataclass
class _Tracked:
    obj: Obj
    reads: int = 0
    attempts: int = 0


class FakeKubernetesApi:
    """TEST DOUBLE (see the module docstring). Use as a context manager; `url` is its address."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.received: list[Obj] = []  # every object created, as the client sent it
        self.requests: list[tuple[str, str]] = []
        self._objects: dict[tuple[str, str, str], _Tracked] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FakeKubernetesApi:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def kubeconfig(self) -> Obj:
        """A kubeconfig pointing at the double (plain HTTP, no credentials)."""
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "double", "cluster": {"server": self.url}}],
            "users": [{"name": "nobody", "user": {}}],
            "contexts": [{"name": "double", "context": {"cluster": "double", "user": "nobody"}}],
            "current-context": "double",
        }

    # -- the script ------------------------------------------------------------------------------

    def _status(self, tracked: _Tracked) -> Obj:
        statuses = self.script.statuses
        return statuses[min(tracked.reads, len(statuses) - 1)]

    def _finished(self, tracked: _Tracked) -> bool:
        return tracked.reads >= len(self.script.statuses)

    def _pods(self, namespace: str, job_name: str) -> list[Obj]:
        with self._lock:
            tracked = next(
                (t for (ns, _, n), t in self._objects.items() if ns == namespace and n == job_name),
                None,
            )
            if tracked is None or tracked.reads < self.script.pod_from:
                return []
            phase = self.script.final_pod_phase if self._finished(tracked) else "Running"
        return [
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": f"{job_name}-x7k2p",
                    "namespace": namespace,
                    "labels": {"batch.kubernetes.io/job-name": job_name},
                },
                "status": {"phase": phase},
            }
        ]

    # -- HTTP ------------------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _send(self, code: int, body: Obj) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _route(self, method: str) -> None:
                url = urlparse(self.path)
                api.requests.append((method, self.path))
                for verb, pattern, action in ROUTES:
                    match = re.fullmatch(pattern, url.path)
                    if verb == method and match:
                        getattr(self, action)(parse_qs(url.query), **match.groupdict())
                        return
                self._send(404, _status(404, "NotFound", f"no route {method} {url.path}"))

            def do_GET(self) -> None:
                self._route("GET")

            def do_POST(self) -> None:
                self._route("POST")

            def create(self, query: dict[str, list[str]], ns: str) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                obj = json.loads(self.rfile.read(length))
                key = (ns, obj["kind"], obj["metadata"]["name"])
                with api._lock:
                    api.received.append(obj)
                    if key in api._objects:
                        self._send(409, _status(409, "AlreadyExists", f"{key[2]} already exists"))
                        return
                    stored = json.loads(json.dumps(obj))
                    stored["metadata"].update(
                        uid="0b5e5c1e-0000-4000-8000-000000000001",
                        creationTimestamp="2026-01-01T00:00:00Z",
                        resourceVersion="1",
                    )
                    api._objects[key] = _Tracked(stored)
                self._send(201, stored)

            def read(self, query: dict[str, list[str]], ns: str, name: str) -> None:
                kind = "RayJob" if "/rayjobs/" in self.path else "Job"
                with api._lock:
                    tracked = api._objects.get((ns, kind, name))
                    if tracked is None:
                        self._send(404, _status(404, "NotFound", f"{kind} {name} not found"))
                        return
                    tracked.attempts += 1
                    if tracked.attempts - 1 in api.script.unavailable_reads:
                        self._send(503, _status(503, "ServiceUnavailable", "etcd is busy"))
                        return
                    body = {**tracked.obj, "status": api._status(tracked)}
                    tracked.reads += 1
                self._send(200, body)

            def pods(self, query: dict[str, list[str]], ns: str) -> None:
                selector = query.get("labelSelector", [""])[0]
                key, _, job_name = selector.partition("=")
                items = api._pods(ns, job_name) if key == "batch.kubernetes.io/job-name" else []
                self._send(200, {"apiVersion": "v1", "kind": "PodList", "items": items})

            def log(self, query: dict[str, list[str]], ns: str, pod: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()  # no length: HTTP/1.0, the body ends when the pod's log does
                for line in api.script.log_lines:
                    self.wfile.write(f"{line}\n".encode())
                    self.wfile.flush()
                    time.sleep(api.script.log_delay_s)

        return Handler


def _status(code: int, reason: str, message: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Status",
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message,
    }


@contextmanager
def fake_kubernetes(script: Script) -> Iterator[FakeKubernetesApi]:
    with FakeKubernetesApi(script) as api:
        yield api
