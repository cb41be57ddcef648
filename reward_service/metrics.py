"""Every Prometheus metric of the service, declared once: stable `rrm_` names, bounded labels,
explicit buckets. Gateways and workers export them on their own metrics port (see `observe.py`).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

# ---- gateway ----
RPCS = Counter("rrm_rpcs_total", "RPCs answered, by method and status code", ["method", "code"])
RPC_LATENCY = Histogram(
    "rrm_rpc_latency_seconds", "RPC latency by method", ["method"], buckets=LATENCY_BUCKETS
)
QUEUE_DEPTH = Gauge("rrm_queue_depth", "Judgments queued or running, as the gateway sees them")
OVERLOADED = Counter("rrm_overloaded_total", "Calls refused with RESOURCE_EXHAUSTED")
CASCADE_COMPARISONS = Counter(
    "rrm_cascade_comparisons_total",
    "Comparisons judged with a budget cascade, by the stage that decided: short or full",
    ["decided_by"],
)
CASCADE_ESCALATIONS = Counter(
    "rrm_cascade_escalations_total",
    "Budget-cascade comparisons re-judged at the full budget, by why the short stage did not "
    "stand: undecided (a short vote failed or named no winner), orders_disagree, uncertain "
    "(|p(A) - 0.5| below the threshold)",
    ["reason"],
)

# ---- worker ----
JUDGMENTS = Counter(
    "rrm_judgments_total", "Judgments finished by a worker, by parse status", ["status"]
)
JUDGMENT_LATENCY = Histogram(
    "rrm_judgment_latency_seconds",
    "Time to run one judgment on the engine",
    buckets=LATENCY_BUCKETS,
)
QUEUE_WAIT = Histogram(
    "rrm_queue_wait_seconds",
    "Time a job waited on the queue before a worker took it",
    buckets=LATENCY_BUCKETS,
)
IN_FLIGHT = Gauge("rrm_worker_in_flight", "Judgments running in this worker")
RELEASED = Counter(
    "rrm_jobs_released_total",
    "Jobs handed back to the queue, by reason: engine_outage, engine_timeout (an engine that is "
    "up but slower than its request timeout) and shutdown spend none of the job's tries; "
    "job_fault (an engine that answers probes failed on this input) spends one",
    ["reason"],
)
DISCARDED = Counter("rrm_jobs_discarded_total", "Jobs skipped: cancelled or past their deadline")
LOST_LEASES = Counter(
    "rrm_lost_leases_total",
    "Judgments aborted because another worker took the job over (this one was unresponsive)",
)
DEAD_LETTERS = Counter("rrm_dead_letters_total", "Jobs moved to the dead-letter stream")
CACHE = Counter("rrm_verdict_cache_total", "Verdict cache lookups", ["result"])  # hit | miss
PROMPT_TOKENS = Counter("rrm_engine_prompt_tokens_total", "Prompt tokens sent to the engine")
COMPLETION_TOKENS = Counter("rrm_engine_completion_tokens_total", "Tokens the engine generated")
ENGINE_REQUESTS = Counter(
    "rrm_engine_requests_total",
    "Engine requests of judgments: reasoning (one per vote), verdict_read (a natural verdict the "
    "reasoning's logprobs could not place), forced_read (no verdict by itself)",
    ["purpose"],
)
ENGINE_RESTARTS = Counter("rrm_engine_restarts_total", "Engine restarts after it died")
ENGINE_UP = Gauge("rrm_engine_up", "1 while this worker's engine answers, 0 during an outage")
ENGINE_OUTAGES = Counter(
    "rrm_engine_outages_total", "Engine outages seen by this worker (intake stopped until back)"
)
ENGINE_OUTAGE_SECONDS = Counter(
    "rrm_engine_outage_seconds_total", "Seconds this worker's engine was down, summed"
)
READY = Gauge("rrm_ready", "1 once this process answered its warm-up judgment")
