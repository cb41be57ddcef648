"""Draw the chart's Grafana dashboard from a real Prometheus: every panel's PromQL, as shipped,
queried over a time range and plotted with matplotlib in the dashboard's own grid. No Grafana
here; the picture shows what the panels show, from the same queries and the same data.

    python -m tests.ops.dashboard_snapshot docs/img/dashboard.png

runs tests/ops/stack.py's monitored stack (a real gateway and Prometheus, a worker on the
scripted engine test double limited to 4 judgments at once) through a ramp of traffic (2, then
12, then 4 callers) and draws the result.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from tests.ops.stack import Prometheus, drive_traffic, monitored_stack

RATE_INTERVAL = "15s"
UNITS = {"reqps": "/s", "s": "s", "percentunit": "share", "short": ""}


def legend(template: str, metric: dict[str, str]) -> str:
    out = template
    for key, value in metric.items():
        out = out.replace("{{" + key + "}}", value)
    while "{{" in out:  # labels the series does not have
        head, _, rest = out.partition("{{")
        out = head + rest.partition("}}")[2]
    return out.strip() or "value"


def draw(
    dashboard: dict[str, Any], prometheus: Prometheus, start: float, end: float, out: Path
) -> int:
    """Plot every panel over [start, end]; returns how many series were drawn."""
    panels = dashboard["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    fig = plt.figure(figsize=(18, rows * 0.5))
    grid = fig.add_gridspec(rows, 24, hspace=4.0, wspace=1.2)
    drawn = 0
    step = max(1.0, (end - start) / 200)
    for panel in panels:
        g = panel["gridPos"]
        ax = fig.add_subplot(grid[g["y"] : g["y"] + g["h"], g["x"] : g["x"] + g["w"]])
        ax.set_title(panel["title"], fontsize=10, loc="left")
        defaults = panel["fieldConfig"]["defaults"]
        unit = UNITS.get(defaults.get("unit", "short"), "")
        decimals = defaults.get("decimals")
        for target in panel["targets"]:
            expr = target["expr"].replace("$__rate_interval", RATE_INTERVAL)
            if panel["type"] == "stat":
                result = prometheus.query(expr, at=end)
                shown = [float(r["value"][1]) for r in result]
                text = ", ".join(
                    f"{v:.{decimals}f}" if decimals is not None else f"{v:g}" for v in shown
                )
                text = text or "no data"
                ax.text(0.5, 0.45, text, ha="center", va="center", fontsize=26, weight="bold")
                ax.set_axis_off()
                drawn += len(result)
                continue
            for series in prometheus.query_range(expr, start, end, step):
                xs = [float(t) - start for t, _ in series["values"]]
                ys = [float(v) for _, v in series["values"]]
                ax.plot(xs, ys, label=legend(target["legendFormat"], series["metric"]))
                drawn += 1
        if panel["type"] != "stat":
            ax.set_xlabel("seconds", fontsize=8)
            ax.set_ylabel(unit, fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            if ax.lines:
                ax.legend(fontsize=6, loc="upper left")
    when = datetime.fromtimestamp(end, UTC).strftime("%Y-%m-%d %H:%M UTC")
    fig.suptitle(
        f"{dashboard['title']}: the chart's dashboard queries on a real Prometheus ({when})",
        fontsize=13,
        y=0.93,
    )
    fig.savefig(out, dpi=80, bbox_inches="tight")
    plt.close(fig)
    return drawn


async def ramp(address: str) -> None:
    for seconds, clients in ((20, 2), (30, 12), (20, 4)):
        await drive_traffic(address, seconds, clients=clients)


def main() -> None:
    from tests.ops.test_prometheus import chart_objects, dashboard_of

    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    dashboard = dashboard_of(chart_objects())
    with tempfile.TemporaryDirectory() as tmp:
        worker_env = {"RRM_WORKER__MAX_IN_FLIGHT": "4"}
        with monitored_stack(Path(tmp), worker_env) as stack:
            start = time.time()
            asyncio.run(ramp(stack.address))
            time.sleep(15)  # the queue drains
            end = time.time()
            args.out.parent.mkdir(parents=True, exist_ok=True)
            drawn = draw(dashboard, stack.prometheus, start, end, args.out)
    print(f"{args.out}: {drawn} series, {end - start:.0f} s of traffic")


if __name__ == "__main__":
    main()
