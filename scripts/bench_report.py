#!/usr/bin/env python3
"""Writes the Markdown table of `make bench` (scripts/bench.sh) to stdout.

Usage: bench_report.py WORKDIR

WORKDIR holds the JSON reports of `kvstore bench --json`, one file a scenario, plus
machine.json and, for each round of the replay, consume-N.json (a bench report),
replay-N.json and memory-N.json written by bench.sh.
"""

import json
import statistics
import sys
from pathlib import Path

RAW_RECORD_BYTES = 16 + 100  # a 16-byte key and a 100-byte value


def load(workdir, name):
    return json.loads((workdir / f"{name}.json").read_text())


def ms(value):
    """Milliseconds with three significant figures at most."""
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def count(value):
    return f"{value:,.0f}"


def rounds(workdir, name):
    """The reports NAME-1.json, NAME-2.json, ... in round order."""
    files = sorted(workdir.glob(f"{name}-*.json"), key=lambda f: int(f.stem.rsplit("-", 1)[1]))
    if not files:
        sys.exit(f"no {name}-N.json in {workdir}")
    return [json.loads(f.read_text()) for f in files]


def rates(values):
    return ", ".join(f"{v / 1e6:.2f}M" for v in values)


def ratio(numerator, denominator):
    return f"{numerator / denominator:.2f}×" if denominator else "n/a"


def errors(report):
    if not report["errors"]:
        return ""
    failed = ", ".join(f"{kind}: {n}" for kind, n in sorted(report["errors"].items()))
    return f"errors {failed}"


def row(number, what, report, notes=""):
    latency = report["latency_ms"]
    p50 = ms(latency["p50"]) if latency else ""
    p99 = ms(latency["p99"]) if latency else ""
    unit = "records/s" if report["unit"] == "records" else "ops/s"
    notes = "; ".join(n for n in (notes, errors(report)) if n)
    return (
        f"| {number} | {what} | {report['concurrency']} | "
        f"{count(report['operations_per_second'])} {unit} | {p50} | {p99} | {notes} |"
    )


def main():
    workdir = Path(sys.argv[1])
    r = {
        name: load(workdir, name)
        for name in [
            "produce", "roundtrip", "healthz-1", "produce-followed", "put-1", "put-16", "put-64", "batch-100", "batch-1000",
            "get-64", "healthz-64", "etcd-put-1", "etcd-put-16", "etcd-put-64", "etcd-get-64",
            "get-during-replay", "machine",
        ]
    }
    machine = r["machine"]
    # Row 9 and 10: the median of the rounds, each a bare consumer read and a replica's replay.
    replays = rounds(workdir, "replay")
    consumes = rounds(workdir, "consume")
    memories = rounds(workdir, "memory")
    replay = replays[0]
    replay_rates = [one["records"] / one["seconds"] for one in replays]
    consume_rates = [one["operations_per_second"] for one in consumes]
    replay_rate = statistics.median(replay_rates)
    consume_rate = statistics.median(consume_rates)
    replay_seconds = statistics.median(one["seconds"] for one in replays)
    consume_seconds = statistics.median(one["elapsed_seconds"] for one in consumes)
    per_key = [
        ((m["rss_after_kib"] - m["rss_before_kib"]) * 1024 / one["keys"], m)
        for m, one in zip(memories, replays)
    ]
    # The median round itself (the lower middle one of an even count), for its VmRSS figures.
    per_key.sort(key=lambda pair: pair[0])
    bytes_per_key, memory = per_key[(len(per_key) - 1) // 2]
    of_rounds = f"median of {len(replays)} rounds" if len(replays) > 1 else "one round"
    memory_gib = machine["memory_kib"] / 1024 / 1024

    def batch_notes(report):
        return (
            f"{ms(report['ms_per_operation'])} ms per operation; "
            f"p50/p99 per batch request"
        )

    lines = [
        "# kvstore benchmark results",
        "",
        f"Measured by `make bench` on {machine['date']}: {machine['cores']} cores "
        f"({machine['cpu']}), {memory_gib:.1f} GiB memory, {machine['kernel']}; kvstore "
        f"{machine['kvstore']}, Tansu {machine['tansu'] or '0.6.0'} (memory storage), etcd "
        f"{machine['etcd']}. The broker, the servers and the load tool (`kvstore bench`) "
        f"share the machine, all on loopback. {machine['seconds_per_scenario']} s per "
        f"scenario; keys of 16 bytes, values of {machine['value_size']} bytes; each kvstore "
        f"scenario on a fresh server and topic. Load average at the start "
        f"{machine['load_at_start']}, at the end {machine['load_at_end']}; the run took "
        f"{machine['run_seconds'] // 60} min {machine['run_seconds'] % 60} s.",
        "",
        "| # | measurement | clients | throughput | p50 ms | p99 ms | notes |",
        "|---|---|---|---|---|---|---|",
        row(1, "produce floor: bare producer, the service's settings", r["produce"],
            "one record at a time, until acknowledged; the broker keeps records in memory only"),
        row(2, "round-trip floor: produce, then consume back", r["roundtrip"],
            "until the consumer has the record"),
        row(3, "kvstore PUT", r["put-1"]),
        row(3, "what it is made of: GET /healthz (the HTTP floor)",
            r["healthz-1"]),
        row(3, "... and the produce floor while a kvstore replica follows the topic",
            r["produce-followed"],
            "as row 1, but a replica fetches the topic meanwhile, as it follows its own"),
        row(4, "kvstore PUT", r["put-16"]),
        row(4, "kvstore PUT", r["put-64"]),
        row(5, "kvstore batch of 100 puts", r["batch-100"], batch_notes(r["batch-100"])),
        row(5, "kvstore batch of 1000 puts", r["batch-1000"], batch_notes(r["batch-1000"])),
        row(6, f"kvstore GET, {count(machine['get_keys'])} keys", r["get-64"]),
        row(7, "kvstore GET /healthz (the HTTP floor)", r["healthz-64"]),
        row(8, "etcd PUT (JSON gateway)", r["etcd-put-1"], "each write fsynced to disk"),
        row(8, "etcd PUT (JSON gateway)", r["etcd-put-16"]),
        row(8, "etcd PUT (JSON gateway)", r["etcd-put-64"]),
        row(8, f"etcd GET (JSON gateway), {count(machine['get_keys'])} keys", r["etcd-get-64"],
            "linearizable reads, etcd's default"),
        f"| 9 | replay: a fresh replica attaches {count(replay['records'])} records | 1 | "
        f"{count(replay_rate)} records/s | | | {of_rounds} ({rates(replay_rates)}); "
        f"{replay_seconds:.2f} s from first request to ready |",
        f"| 9 | bare consumer reading the same topic | 1 | {count(consume_rate)} records/s | | | "
        f"{of_rounds} ({rates(consume_rates)}); {consume_seconds:.2f} s to the end of the topic |",
        f"| 10 | memory: replica's resident bytes per key | | {bytes_per_key:.0f} B/key | | | "
        f"{of_rounds}; VmRSS {memory['rss_before_kib'] / 1024:.0f} MiB before attaching, "
        f"{memory['rss_after_kib'] / 1024:.0f} MiB after, for {count(replay['keys'])} keys; "
        f"raw key + value {RAW_RECORD_BYTES} B |",
        row(11, f"kvstore GET, {count(machine['get_keys'])} keys, while the server replays "
            f"the {count(replay['records'])} records of another topic", r["get-during-replay"],
            f"for the {r['get-during-replay']['elapsed_seconds']:.2f} s the replay took "
            f"meanwhile"),
        "",
        "Ratios:",
        "",
        f"- kvstore PUT p50 / produce p50 (1 client): "
        f"{ratio(r['put-1']['latency_ms']['p50'], r['produce']['latency_ms']['p50'])}; "
        f"/ round-trip p50: "
        f"{ratio(r['put-1']['latency_ms']['p50'], r['roundtrip']['latency_ms']['p50'])}; "
        f"/ (produce p50 + healthz p50): "
        f"{ratio(r['put-1']['latency_ms']['p50'], r['produce']['latency_ms']['p50'] + r['healthz-1']['latency_ms']['p50'])}; "
        f"/ (followed produce p50 + healthz p50): "
        f"{ratio(r['put-1']['latency_ms']['p50'], r['produce-followed']['latency_ms']['p50'] + r['healthz-1']['latency_ms']['p50'])}",
        f"- produce throughput while a replica follows the topic / without (1 client): "
        f"{ratio(r['produce-followed']['operations_per_second'], r['produce']['operations_per_second'])}",
        f"- kvstore PUT throughput / etcd's, 64 clients: "
        f"{ratio(r['put-64']['operations_per_second'], r['etcd-put-64']['operations_per_second'])}",
        f"- kvstore GET throughput / healthz throughput, 64 clients: "
        f"{ratio(r['get-64']['operations_per_second'], r['healthz-64']['operations_per_second'])}",
        f"- kvstore GET throughput / etcd's, 64 clients: "
        f"{ratio(r['get-64']['operations_per_second'], r['etcd-get-64']['operations_per_second'])}",
        f"- kvstore GET p99 while replaying another topic / without (64 clients): "
        f"{ratio(r['get-during-replay']['latency_ms']['p99'], r['get-64']['latency_ms']['p99'])}",
        f"- replay rate / bare consumer rate (medians): {ratio(replay_rate, consume_rate)}; "
        f"round by round: "
        f"{', '.join(ratio(a, b) for a, b in zip(replay_rates, consume_rates))}",
        f"- resident bytes per key / raw key + value bytes: "
        f"{ratio(bytes_per_key, RAW_RECORD_BYTES)}",
        "",
        "Reproduce with `make bench` (about four minutes after the release build; "
        "`BENCH_SECONDS` sets the seconds per scenario). Figures from a shared or busy machine "
        "vary; compare runs on one machine.",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
