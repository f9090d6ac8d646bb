#!/usr/bin/env python3
"""Writes the Markdown table of `make bench` (scripts/bench.sh) to stdout.

Usage: bench_report.py WORKDIR

WORKDIR holds the JSON reports of `kvstore bench --json`, one file a scenario run, plus
machine.json and, for each round of the replay, replay-N.json and memory-N.json written by
bench.sh. A scenario measured in rounds has one report a round, NAME-1.json, NAME-2.json, ...;
its row shows the medians of the rounds, and a ratio taken from such scenarios is the median
of the ratios of each round, both sides measured one right after the other.
"""

import json
import re
import statistics
import sys
from pathlib import Path

RAW_RECORD_BYTES = 16 + 100  # a 16-byte key and a 100-byte value


def load(workdir, name):
    return json.loads((workdir / f"{name}.json").read_text())


def rounds(workdir, name):
    """The reports NAME-1.json, NAME-2.json, ... in round order."""
    pattern = re.compile(rf"{re.escape(name)}-(\d+)\.json")
    numbered = sorted(
        (int(match.group(1)), path)
        for path in workdir.iterdir()
        if (match := pattern.fullmatch(path.name))
    )
    if not numbered:
        sys.exit(f"no {name}-N.json in {workdir}")
    return [json.loads(path.read_text()) for _, path in numbered]


def median_report(reports):
    """One report of the rounds' medians, errors added up, in the shape of a bench report."""
    first = reports[0]
    latencies = [r["latency_ms"] for r in reports if r["latency_ms"]]
    errors = {}
    for report in reports:
        for kind, n in report["errors"].items():
            errors[kind] = errors.get(kind, 0) + n
    return {
        "concurrency": first["concurrency"],
        "unit": first["unit"],
        "operations_per_second": statistics.median(r["operations_per_second"] for r in reports),
        "latency_ms": {
            "p50": statistics.median(l["p50"] for l in latencies),
            "p99": statistics.median(l["p99"] for l in latencies),
        } if latencies else None,
        "elapsed_seconds": statistics.median(r["elapsed_seconds"] for r in reports),
        "errors": errors,
        "rounds": len(reports),
    }


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


def times(value):
    return f"{value:.2f}×"


def ratio(numerator, denominator):
    return times(numerator / denominator) if denominator else "n/a"


def by_round(numerators, denominators):
    """The median of the rounds' ratios, and each round's, as text."""
    values = [n / d for n, d in zip(numerators, denominators) if d]
    if not values:
        return "n/a"
    if len(values) == 1:
        return times(values[0])
    rounds_text = ", ".join(times(v) for v in values)
    return f"{times(statistics.median(values))} (rounds: {rounds_text})"


def of_rounds(n):
    return f"median of {n} rounds" if n > 1 else ""


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
    notes = "; ".join(
        n for n in (of_rounds(report.get("rounds", 1)), notes, errors(report)) if n
    )
    return (
        f"| {number} | {what} | {report['concurrency']} | "
        f"{count(report['operations_per_second'])} {unit} | {p50} | {p99} | {notes} |"
    )


def p50(reports):
    return [r["latency_ms"]["p50"] for r in reports]


def throughput(reports):
    return [r["operations_per_second"] for r in reports]


def main():
    workdir = Path(sys.argv[1])
    # Bench reports of scenarios run once, and of scenarios run in rounds (shown as medians).
    r = {
        name: load(workdir, name)
        for name in [
            "roundtrip", "put-16", "batch-100", "batch-1000", "etcd-put-1", "etcd-put-16",
            "etcd-get-64", "get-during-replay", "watch-delivery", "machine", "cas-16",
            "etcd-cas-1", "etcd-cas-16",
        ]
    }
    in_rounds = [
        "produce", "put-1", "healthz-1", "produce-followed", "put-64", "etcd-put-64",
        "get-64", "healthz-64", "consume", "put-unwatched", "watched-own", "watched-all",
        "cas-1", "strong-get-64",
    ]
    measured = {
        name: rounds(workdir, name)
        for name in in_rounds + ["replay", "memory", "watchers-memory"]
    }
    r.update((name, median_report(measured[name])) for name in in_rounds)
    machine = r["machine"]

    # Rows 9 and 10: each round a bare consumer read, then a fresh replica's replay.
    replays = measured["replay"]
    replay = replays[0]
    replay_rates = [one["records"] / one["seconds"] for one in replays]
    replay_seconds = statistics.median(one["seconds"] for one in replays)
    per_key = [
        ((m["rss_after_kib"] - m["rss_before_kib"]) * 1024 / one["keys"], m)
        for m, one in zip(measured["memory"], replays)
    ]
    # The median round itself (the lower middle one of an even count), for its VmRSS figures.
    per_key.sort(key=lambda pair: pair[0])
    bytes_per_key, memory = per_key[(len(per_key) - 1) // 2]
    replay_rounds = of_rounds(len(replays))
    replay_notes = "; ".join(
        n for n in (replay_rounds, f"{replay_seconds:.2f} s from first request to ready") if n
    )
    memory_notes = "; ".join(
        n
        for n in (
            replay_rounds,
            f"VmRSS {memory['rss_before_kib'] / 1024:.0f} MiB before attaching, "
            f"{memory['rss_after_kib'] / 1024:.0f} MiB after, for {count(replay['keys'])} "
            f"keys; raw key + value {RAW_RECORD_BYTES} B",
        )
        if n
    )
    memory_gib = machine["memory_kib"] / 1024 / 1024

    # Each round's 1-client PUT against the floors measured in that round.
    put_1, produce = measured["put-1"], measured["produce"]
    healthz_1, followed = measured["healthz-1"], measured["produce-followed"]
    produce_and_http = [a + b for a, b in zip(p50(produce), p50(healthz_1))]
    followed_and_http = [a + b for a, b in zip(p50(followed), p50(healthz_1))]

    rounds_sentence = (
        f"The measurements a target ratio is taken from ran in {len(put_1)} rounds, both sides "
        f"of the ratio one right after the other; their rows show the rounds' medians."
        if len(put_1) > 1
        else "Each measurement ran once."
    )

    fresh_broker = (
        "all on one broker, warmed up first"
        if machine["broker_kind"] == "kafka"
        else "each on an empty broker"
    )

    # Rows 12 to 14: watches.
    delivery = r["watch-delivery"]["watch"]
    own, everyone = measured["watched-own"], measured["watched-all"]

    def events_per_second(reports):
        return statistics.median(one["watch"]["events_per_second"] for one in reports)

    watchers = own[0]["watch"]["watchers"]
    watcher_bytes = statistics.median(
        (m["rss_open_kib"] - m["rss_before_kib"]) * 1024 / m["watchers"]
        for m in measured["watchers-memory"]
    )

    def latency_text(latency):
        return f"p50 {ms(latency['p50'])}, p99 {ms(latency['p99'])} ms" if latency else "n/a"

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
        f"{machine['kvstore']}, {machine['broker'].strip()} ({machine['broker_notes']}), etcd "
        f"{machine['etcd']}. The broker, the servers and the load tool (`kvstore bench`) "
        f"share the machine, all on loopback. {machine['seconds_per_scenario']} s per "
        f"scenario; keys of 16 bytes, values of {machine['value_size']} bytes; each kvstore "
        f"scenario on a fresh server and topic, {fresh_broker}. {rounds_sentence} Load average at "
        f"the start {machine['load_at_start']}, at the end {machine['load_at_end']}; the run took "
        f"{machine['run_seconds'] // 60} min {machine['run_seconds'] % 60} s.",
        "",
        "| # | measurement | clients | throughput | p50 ms | p99 ms | notes |",
        "|---|---|---|---|---|---|---|",
        row(1, "produce floor: bare producer, the service's settings", r["produce"],
            "one record at a time, until acknowledged"),
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
        f"{count(statistics.median(replay_rates))} records/s | | | {replay_notes} |",
        row(9, "bare consumer reading the same topic", r["consume"],
            f"{r['consume']['elapsed_seconds']:.2f} s to the end of the topic"),
        f"| 10 | memory: replica's resident bytes per key | | {bytes_per_key:.0f} B/key | | | "
        f"{memory_notes} |",
        row(11, f"kvstore GET, {count(machine['get_keys'])} keys, while the server replays "
            f"the {count(replay['records'])} records of another topic", r["get-during-replay"],
            f"for the {r['get-during-replay']['elapsed_seconds']:.2f} s the replay took "
            f"meanwhile"),
        f"| 12 | watch: PUT acknowledged on one replica, then its event at a watcher on another "
        f"| 1 | {count(r['watch-delivery']['operations_per_second'])} ops/s | "
        f"{ms(delivery['delivery_ms']['p50'])} | {ms(delivery['delivery_ms']['p99'])} | "
        f"p50/p99 of the delivery; the PUTs themselves {latency_text(r['watch-delivery']['latency_ms'])}; "
        f"the watcher's replica applied them within {latency_text(delivery['apply_lag_ms'])} "
        f"(a watch with `min_offset` there starting; the same request for an offset long applied "
        f"took {latency_text(delivery['request_floor_ms'])}) |",
        row(13, f"kvstore PUT, {count(watchers)} keys, no watchers", r["put-unwatched"]),
        row(13, f"... with {count(watchers)} watchers on the replica, one key each",
            r["watched-own"], f"{count(events_per_second(own))} events/s delivered"),
        row(13, f"... with {count(watchers)} watchers of the whole topic", r["watched-all"],
            f"{count(events_per_second(everyone))} events/s delivered (every write to every "
            f"watcher)"),
        f"| 14 | memory: resident bytes per open watcher | | {watcher_bytes:,.0f} B/watcher | | | "
        f"{of_rounds(len(measured['watchers-memory']))}; {count(watchers)} idle streams, "
        f"server and client on one machine |",
        row(15, "kvstore compare-and-set: GET, then PUT with If-Match", r["cas-1"],
            "1000 keys; each a Kafka transaction"),
        row(15, "kvstore compare-and-set", r["cas-16"],
            "100000 keys, so few conflicts; one topic, so judged one after another"),
        row(15, "etcd compare-and-set: range, then txn on mod_revision", r["etcd-cas-1"],
            "1000 keys"),
        row(15, "etcd compare-and-set", r["etcd-cas-16"], "100000 keys"),
        row(15, f"kvstore GET with consistency=strong, {count(machine['get_keys'])} keys",
            r["strong-get-64"], "one last-stable-offset question shared by concurrent reads"),
        "",
        "Ratios (the median of the rounds' ratios where measured in rounds):",
        "",
        f"- kvstore PUT p50 / produce p50 (1 client): {by_round(p50(put_1), p50(produce))}",
        f"- kvstore PUT p50 / (produce p50 + healthz p50) (1 client): "
        f"{by_round(p50(put_1), produce_and_http)}",
        f"- kvstore PUT p50 / (followed produce p50 + healthz p50) (1 client): "
        f"{by_round(p50(put_1), followed_and_http)}",
        f"- kvstore PUT p50 / round-trip p50 (1 client): "
        f"{ratio(r['put-1']['latency_ms']['p50'], r['roundtrip']['latency_ms']['p50'])}",
        f"- produce throughput while a replica follows the topic / without (1 client): "
        f"{by_round(throughput(followed), throughput(produce))}",
        f"- kvstore PUT throughput / etcd's, 64 clients: "
        f"{by_round(throughput(measured['put-64']), throughput(measured['etcd-put-64']))}",
        f"- kvstore GET throughput / healthz throughput, 64 clients: "
        f"{by_round(throughput(measured['get-64']), throughput(measured['healthz-64']))}",
        f"- kvstore GET throughput / etcd's, 64 clients: "
        f"{ratio(r['get-64']['operations_per_second'], r['etcd-get-64']['operations_per_second'])}",
        f"- kvstore GET p99 while replaying another topic / without (64 clients): "
        f"{ratio(r['get-during-replay']['latency_ms']['p99'], r['get-64']['latency_ms']['p99'])}",
        f"- kvstore CAS p50 / kvstore PUT p50 (1 client): "
        f"{by_round(p50(measured['cas-1']), p50(put_1))}",
        f"- kvstore CAS p50 / kvstore PUT p50 (16 clients): "
        f"{ratio(r['cas-16']['latency_ms']['p50'], r['put-16']['latency_ms']['p50'])}",
        f"- kvstore CAS throughput / etcd's (16 clients): "
        f"{ratio(r['cas-16']['operations_per_second'], r['etcd-cas-16']['operations_per_second'])}",
        f"- kvstore strong GET throughput / plain GET throughput (64 clients): "
        f"{by_round(throughput(measured['strong-get-64']), throughput(measured['get-64']))}",
        f"- replay rate / bare consumer rate: "
        f"{by_round(replay_rates, throughput(measured['consume']))}",
        f"- resident bytes per key / raw key + value bytes: "
        f"{ratio(bytes_per_key, RAW_RECORD_BYTES)}",
        f"- kvstore PUT throughput with {count(watchers)} watchers of one key each / without "
        f"(16 clients; target ≥ 0.9×): "
        f"{by_round(throughput(own), throughput(measured['put-unwatched']))}",
        f"- kvstore PUT throughput with {count(watchers)} watchers of the whole topic / without "
        f"(16 clients): {by_round(throughput(everyone), throughput(measured['put-unwatched']))}",
        "",
        "Reproduce with `make bench` (about ten minutes after the release build; "
        "`BENCH_SECONDS` sets the seconds per scenario, `BENCH_ROUNDS` the rounds). Figures "
        "from a shared or busy machine vary; compare runs on one machine.",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
