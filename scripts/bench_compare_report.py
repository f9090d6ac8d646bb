#!/usr/bin/env python3
"""Writes the Markdown table of `make bench-compare` (scripts/bench-compare.sh) to stdout.

Usage: bench_compare_report.py WORKDIR SCENARIO...

WORKDIR holds meta.json, written by bench-compare.sh, and the JSON reports of
`kvstore bench --json`, SCENARIO-SIDE-ROUND.json for each scenario named, each side (base,
head) and each round. A row is a scenario in the order named: each side's median over the
rounds, its lowest and highest, and head's median over base's.
"""

import json
import statistics
import sys
from pathlib import Path

from bench_report import count, ms, ratio

SIDES = ("base", "head")

WHAT = {
    "put": "PUT",
    "get": "GET",
    "range": "range",
    "cas": "compare-and-set",
    "watch": "watch: PUT, then its event at a watcher on the same server",
}


def p50(report):
    """The p50 in ms: a watch's is its delivery latency (PUT acknowledged to event)."""
    watch = report["scenario"] == "watch"
    latency = report["watch"]["delivery_ms"] if watch else report["latency_ms"]
    return latency["p50"] if latency else None


def label(report):
    clients = report["concurrency"]
    what = WHAT.get(report["scenario"], report["scenario"])
    what += f", {clients} client{'s' * (clients != 1)}"
    if report["scenario"] == "range":
        what += f", {report['batch_size']} keys a page"
    if report["scenario"] == "watch":
        what += "; p50 of the delivery"
    return what


def cell(values, show):
    """The median of values, with their range where there is more than one."""
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    text = show(statistics.median(values))
    if len(values) > 1:
        text += f" ({show(min(values))}–{show(max(values))})"
    return text


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else 0


def main():
    workdir = Path(sys.argv[1])
    scenarios = sys.argv[2:]
    meta = json.loads((workdir / "meta.json").read_text())
    rounds = int(meta["rounds"])
    lines = [
        f"# kvstore {meta['base']} (base) vs {meta['head']} (head)",
        "",
        f"- base: `{meta['base']}` {meta['base_subject']}",
        f"- head: `{meta['head']}` {meta['head_subject']}",
        f"- {meta['date']}; {rounds} round{'s' * (rounds != 1)} of {meta['seconds']} s a "
        f"scenario a side, base then head, each run on a fresh server and topic; the load "
        f"from head's `kvstore bench`; {meta['broker']}; {meta['cores']} cores, load average "
        f"{meta['load_at_start']} at the start, {meta['load_at_end']} at the end; "
        f"{meta['run_seconds']} s from the broker's start to the last run's end",
        "",
        "| scenario | base ops/s | head ops/s | head/base | base p50 ms | head p50 ms | head/base |",
        "|---|---|---|---|---|---|---|",
    ]
    failed = []
    for name in scenarios:
        reports = {
            side: [
                json.loads((workdir / f"{name}-{side}-{n}.json").read_text())
                for n in range(1, rounds + 1)
            ]
            for side in SIDES
        }
        ops = {side: [r["operations_per_second"] for r in reports[side]] for side in SIDES}
        p50s = {side: [p50(r) for r in reports[side]] for side in SIDES}
        lines.append(
            f"| {label(reports['base'][0])} | {cell(ops['base'], count)} | "
            f"{cell(ops['head'], count)} | {ratio(median(ops['head']), median(ops['base']))} | "
            f"{cell(p50s['base'], ms)} | {cell(p50s['head'], ms)} | "
            f"{ratio(median(p50s['head']), median(p50s['base']))} |"
        )
        for side in SIDES:
            for n, report in enumerate(reports[side], 1):
                if report["errors"]:
                    kinds = ", ".join(f"{k}: {v}" for k, v in sorted(report["errors"].items()))
                    failed.append(f"- {name}, {side}, round {n}: {kinds}")
    if rounds > 1:
        lines += [
            "",
            "Medians of the rounds, the lowest and highest in brackets. Where the two sides' "
            "ranges overlap, a ratio is within the noise of this machine.",
        ]
    else:
        lines += ["", "One round: no spread to tell a difference from noise by."]
    if failed:
        lines += ["", "Failed requests:", ""] + failed
    print("\n".join(lines))


if __name__ == "__main__":
    main()
