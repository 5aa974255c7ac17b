"""Plots the fan-out scale curve that benches/run-scale.sh measured.

    .venv/bin/python benches/plot-scale.py benches/results/scale.csv benches/results/scale.png

Left: deliveries/s at saturation against subscribers, per server. Right:
publish-to-deliver p99 against subscribers, at the fixed publish rate
(solid) and at saturation (dashed). A point measured over several server
processes (the `processes` column, benches/run-scale-spread.sh) is drawn
hollow and named in a note under the plots.
"""

import csv
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"webrocket": "tab:blue", "ideal": "tab:green", "nats": "tab:orange"}


def main(source, target):
    rows = defaultdict(list)  # (server, mode) -> [(subscribers, row)]
    rate = None
    with open(source, newline="") as f:
        for row in csv.DictReader(f):
            rows[(row["server"], row["mode"])].append((int(row["subscribers"]), row))
            if row["mode"] == "rate":
                rate = row["rate"]
    servers = [s for s in COLORS if any(k[0] == s for k in rows)]
    spread = sorted({(n, int(r.get("processes") or 1)) for points in rows.values()
                     for n, r in points if int(r.get("processes") or 1) > 1})
    ticks = sorted({n for points in rows.values() for n, _ in points})
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    for server in servers:
        color = COLORS[server]
        points = sorted(rows.get((server, "saturated"), []))
        if points:
            xs = [n for n, _ in points]
            left.plot(xs, [float(r["deliveries_per_sec"]) / 1e6 for _, r in points],
                      "o-", color=color, label=server)
            right.plot(xs, [float(r["p99_us"]) / 1000 for _, r in points],
                       "o--", color=color, alpha=0.6, label=f"{server}, saturated")
        points = sorted(rows.get((server, "rate"), []))
        if points:
            right.plot([n for n, _ in points], [float(r["p99_us"]) / 1000 for _, r in points],
                       "s-", color=color, label=f"{server}, {rate} msg/s")
    for n, processes in spread:
        for server in servers:
            for mode, ax in (("saturated", left), ("rate", right)):
                for m, r in rows.get((server, mode), []):
                    if m == n:
                        y = float(r["deliveries_per_sec"]) / 1e6 if ax is left else float(r["p99_us"]) / 1000
                        ax.plot([n], [y], "o", markersize=11, markerfacecolor="none",
                                markeredgecolor=COLORS[server])
    notes = [f"{n // 1000}k subscribers: over {p} processes (webrocket: a {p}-node cluster; "
             f"ideal: {p} shards the publisher writes to; nats: a {p}-node cluster), "
             "past one process's open-files limit" for n, p in spread]
    if notes:
        fig.text(0.01, 0.01, "\n".join(notes), fontsize=8)
    left.set(xscale="log", xlabel="subscribers (one channel, 100-byte data)",
             ylabel="deliveries/s (millions)", title="Saturated fan-out")
    left.set_ylim(bottom=0)
    right.set(xscale="log", yscale="log", xlabel="subscribers",
              ylabel="publish-to-deliver p99 (ms)", title="Latency p99")
    for ax in (left, right):
        ax.set_xticks(ticks, [f"{n // 1000}k" if n % 1000 == 0 else str(n) for n in ticks])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("webrocket vs the ideal coalescing server vs nats-server (benches/run-scale.sh)")
    fig.tight_layout(rect=(0, 0.05 if notes else 0, 1, 1))
    fig.savefig(target, dpi=100)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
