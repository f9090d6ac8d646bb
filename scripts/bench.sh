#!/usr/bin/env bash
# `make bench`: measures kvstore on this machine in one run, beside the floors beneath it (a
# bare Kafka producer and consumer, HTTP alone) and beside etcd, with `kvstore bench`; writes
# the table to bench/RESULTS.md and prints it.
#
# Starts a broker, kvstore servers and etcd 3.4 on free loopback ports, and stops them all on
# exit. Each kvstore scenario gets a fresh server and topic, so no earlier scenario's topics
# are being replayed while it runs. Needs the release build (`make bench` builds it), Python 3,
# etcd (Debian's etcd-server, installed with apt-get when missing if run as root), and for
# Apache Kafka what scripts/kafka.sh needs (java, and mvn once).
#
#   BENCH_BROKER           kafka (default): one Apache Kafka node (scripts/kafka.sh) for the
#                          whole run; tansu: Tansu with memory storage (scripts/tansu.sh), an
#                          empty broker for each scenario
#   BENCH_SECONDS          seconds per measured scenario (default 10)
#   BENCH_REPLAY_RECORDS   records in the replay topic, a multiple of 1000 (default 1000000)
#   BENCH_ROUNDS           rounds of each measurement a target ratio is taken from (default 3)
#   BENCH_OUTPUT           where to write the table (default bench/RESULTS.md)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh

seconds="${BENCH_SECONDS:-10}"
replay_records="${BENCH_REPLAY_RECORDS:-1000000}"
rounds="${BENCH_ROUNDS:-3}"
output="${BENCH_OUTPUT:-bench/RESULTS.md}"
broker_kind="${BENCH_BROKER:-kafka}"
kvstore=target/release/kvstore

if [ ! -x "$kvstore" ]; then
  echo "no $kvstore: run \`make bench\`, which builds it first" >&2
  exit 1
fi
if [ $((replay_records % 1000)) -ne 0 ] || [ "$replay_records" -le 0 ]; then
  echo "BENCH_REPLAY_RECORDS must be a positive multiple of 1000" >&2
  exit 2
fi
if ! [ "$rounds" -ge 1 ] 2>/dev/null; then
  echo "BENCH_ROUNDS must be a positive whole number" >&2
  exit 2
fi
case "$broker_kind" in
  kafka | tansu) ;;
  *)
    echo "BENCH_BROKER must be kafka or tansu" >&2
    exit 2
    ;;
esac

started=$(date +%s)
start_work bench

rss_kib() {
  awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

load_at_start="$(load_average)"

# The broker. Tansu's memory storage slows down as it fills (64-client PUT rounds on fresh
# topics of one broker: 16.2k, 13.0k, 10.1k ops/s), so with Tansu each scenario (or round) gets
# an empty broker. Kafka's log does not (the same rounds on one Kafka broker: see README,
# Performance), and a Kafka node takes 5-10 s to start and its JIT compiler a while longer to
# warm up: with Kafka the whole run shares one broker, started and warmed up once. Its
# settings are kafka.sh's (a small heap, the C1 compiler only, two network and two I/O
# threads), the same broker the tests run.
broker=""
broker_pid=""
server_env=()
floor_consumer=()
case "$broker_kind" in
  kafka)
    broker_version="Apache Kafka $(scripts/kafka.sh version)"
    broker_notes="one node in KRaft mode, scripts/kafka.sh's settings; the log on local disk, not fsynced, as Kafka's default is"
    ;;
  tansu)
    tansu="$(scripts/tansu.sh memory)"
    broker_version=""  # read from its log once it has started
    broker_notes="memory storage; the broker keeps records in memory only"
    # Tansu waits out every fetch: the servers and the floors' consumers fetch every 10 ms, as
    # kvstore did by default before it moved to Kafka's 500 ms (README, Configuration).
    server_env=(KVSTORE_KAFKA__FETCH_WAIT_MAX=10ms)
    floor_consumer=(--librdkafka fetch.wait.max.ms=10)
    ;;
esac

# start_broker: the broker for the next scenario, which sets broker: with Tansu, stops the
# running broker, if any, and starts an empty one; with Kafka, starts the run's one broker on
# the first call and warms it up.
start_broker() {
  if [ "$broker_kind" = kafka ]; then
    if [ -z "$broker" ]; then start_kafka; fi
    return
  fi
  if [ -n "$broker_pid" ]; then stop "$broker_pid"; fi
  local port
  port="$(free_port)"
  broker="127.0.0.1:$port"
  rm -rf "$work/tansu"
  mkdir -p "$work/tansu"
  (cd "$work/tansu" && exec "$tansu" broker \
    --listener-url "tcp://$broker" \
    --advertised-listener-url "tcp://$broker" \
    --storage-engine memory://tansu/ >>"$work/tansu.log" 2>&1) &
  broker_pid=$!
  pids+=("$broker_pid")
  wait_for_port "$port"
}

# etcd, installed before anything is measured.
if ! command -v etcd >/dev/null; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "etcd is missing: apt-get install --no-install-recommends etcd-server" >&2
    exit 1
  fi
  step "installing etcd (Debian's etcd-server)"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends etcd-server >&2
fi

# The measurements a target ratio is taken from run in rounds, each round measuring both
# sides of the ratio one right after the other; the report takes the median of the rounds'
# ratios. A shared machine's speed drifts over minutes: with one measurement of each side, a
# minute apart, GET against /healthz came out anywhere from 0.68 to 1.05 in seven runs.
for round in $(seq "$rounds"); do
  start_broker
  step "1/15 round $round/$rounds: produce floor, bare producer, service settings, 1 record at a time"
  bench "produce-$round" --scenario produce --brokers "$broker" --topic "floor-produce-$round" \
    --duration "${seconds}s" --value-size "$value_size"

  step "3/15 round $round/$rounds: kvstore PUT, 1 client"
  kvstore_server "put-1-$round"
  bench "put-1-$round" --url "$kv_url" --topic "put-1-$round" --scenario put \
    --concurrency 1 --duration "${seconds}s" --value-size "$value_size"
  step "15/15 round $round/$rounds: kvstore compare-and-set (GET, then PUT with If-Match), 1 client, same server"
  bench "cas-1-$round" --url "$kv_url" --topic "cas-1-$round" --scenario cas \
    --concurrency 1 --keys 1000 --duration "${seconds}s" --value-size "$value_size"
  stop "$kv_pid"

  kvstore_server "floors-$round"
  step "3/15 round $round/$rounds: what a 1-client PUT is made of: GET /healthz, 1 client (the HTTP floor)"
  bench "healthz-1-$round" --url "$kv_url" --scenario healthz --concurrency 1 \
    --duration "${seconds}s"
  step "3/15 round $round/$rounds: ... and the produce floor while a kvstore replica follows the topic"
  curl -sf -o /dev/null -X PUT --data-binary x "$kv_url/v1/floor-followed-$round/keys/attach"
  bench "produce-followed-$round" --scenario produce --brokers "$broker" \
    --topic "floor-followed-$round" --duration "${seconds}s" --value-size "$value_size"
  stop "$kv_pid"
done

step "2/15 round-trip floor: produce 1 record, consume it back"
start_broker
bench roundtrip --scenario roundtrip --brokers "$broker" --topic floor-roundtrip \
  --duration "${seconds}s" --value-size "$value_size" "${floor_consumer[@]}"

step "4/15 kvstore PUT, 16 clients"
start_broker
kvstore_server put-16
bench put-16 --url "$kv_url" --topic put-16 --scenario put \
  --concurrency 16 --duration "${seconds}s" --value-size "$value_size"
step "15/15 kvstore compare-and-set, 16 clients, 100000 keys, same server"
bench cas-16 --url "$kv_url" --topic cas-16 --scenario cas \
  --concurrency 16 --keys 100000 --duration "${seconds}s" --value-size "$value_size"
stop "$kv_pid"

for size in 100 1000; do
  step "5/15 kvstore batch of $size operations, 1 client"
  start_broker
  kvstore_server "batch-$size"
  bench "batch-$size" --url "$kv_url" --topic "batch-$size" --scenario batch \
    --batch-size "$size" --keys 1000000 --duration "${seconds}s" --value-size "$value_size"
  stop "$kv_pid"
done

start_broker
kvstore_server get
prefill=(--prefill) # the first round writes the keys first
for round in $(seq "$rounds"); do
  step "6/15 round $round/$rounds: kvstore GET, 64 clients, $get_keys keys"
  bench "get-64-$round" --url "$kv_url" --topic get --scenario get --concurrency 64 \
    --keys "$get_keys" "${prefill[@]}" --duration "${seconds}s" --value-size "$value_size"
  prefill=()
  step "15/15 round $round/$rounds: kvstore GET with consistency=strong, 64 clients, same keys"
  bench "strong-get-64-$round" --url "$kv_url" --topic get --scenario strong-get \
    --concurrency 64 --keys "$get_keys" --duration "${seconds}s" --value-size "$value_size"
  step "7/15 round $round/$rounds: kvstore GET /healthz, 64 clients, same server"
  bench "healthz-64-$round" --url "$kv_url" --scenario healthz --concurrency 64 \
    --duration "${seconds}s"
done
stop "$kv_pid"

step "8/15 etcd $(etcd --version | awk '/^etcd Version/ { print $3 }') through its JSON gateway"
etcd_port="$(free_port)"
etcd_peer_port="$(free_port)"
etcd --name bench --data-dir "$work/etcd" \
  --listen-client-urls "http://127.0.0.1:$etcd_port" \
  --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" \
  --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
  --initial-cluster "bench=http://127.0.0.1:$etcd_peer_port" >"$work/etcd.log" 2>&1 &
etcd_pid=$!
pids+=("$etcd_pid")
etcd_url="http://127.0.0.1:$etcd_port"
wait_for_url "$etcd_url/health"
for clients in 1 16; do
  step "8/15 etcd PUT, $clients client(s)"
  bench "etcd-put-$clients" --target etcd --url "$etcd_url" --scenario put \
    --concurrency "$clients" --duration "${seconds}s" --value-size "$value_size"
  step "15/15 etcd compare-and-set (range, then a txn on mod_revision), $clients client(s)"
  keys=$((clients == 1 ? 1000 : 100000))
  bench "etcd-cas-$clients" --target etcd --url "$etcd_url" --scenario cas \
    --concurrency "$clients" --keys "$keys" --duration "${seconds}s" --value-size "$value_size"
done
# PUT at 64 clients, kvstore then etcd, in rounds (etcd idles while kvstore runs).
for round in $(seq "$rounds"); do
  step "4/15 round $round/$rounds: kvstore PUT, 64 clients"
  start_broker
  kvstore_server "put-64-$round"
  bench "put-64-$round" --url "$kv_url" --topic "put-64-$round" --scenario put \
    --concurrency 64 --duration "${seconds}s" --value-size "$value_size"
  stop "$kv_pid"
  step "8/15 round $round/$rounds: etcd PUT, 64 clients"
  bench "etcd-put-64-$round" --target etcd --url "$etcd_url" --scenario put \
    --concurrency 64 --duration "${seconds}s" --value-size "$value_size"
done
step "8/15 etcd GET, 64 clients, $get_keys keys (prefilled)"
bench etcd-get-64 --target etcd --url "$etcd_url" --scenario get --concurrency 64 \
  --keys "$get_keys" --prefill --duration "${seconds}s" --value-size "$value_size"
stop "$etcd_pid"

step "9/15 replay: loading $replay_records records (16-byte keys, $value_size-byte values)"
start_broker
kvstore_server loader
bench load --url "$kv_url" --topic replay --scenario batch --batch-size 1000 \
  --requests $((replay_records / 1000)) --keys "$replay_records" --concurrency 4 \
  --value-size "$value_size"
stop "$kv_pid"

# A replay of 1M records takes well under a second here, and such short runs swing widely
# from run to run (1.4-2.2M records/s for the same consumer): rows 9 and 10 are measured in
# rounds too, each a bare consumer read and then a fresh replica's attach.
for round in $(seq "$rounds"); do
  step "9/15 round $round/$rounds: bare consumer reading the replay topic"
  bench "consume-$round" --scenario consume --brokers "$broker" --topic replay "${floor_consumer[@]}"

  step "9/15 round $round/$rounds: a fresh replica attaching the replay topic"
  kvstore_server "replica-$round"
  rss_before="$(rss_kib "$kv_pid")"
  python3 - "$kv_url" replay >"$work/replay-$round.json" <<'EOF'
# Asks the replica for a key of the topic (which attaches it) and polls /v1/topics until the
# topic is ready with nothing left to apply.
import json, sys, threading, time, urllib.request

url, topic = sys.argv[1], sys.argv[2]

def attach():
    try:
        urllib.request.urlopen(f"{url}/v1/{topic}/keys/key-000000000000", timeout=600).read()
    except Exception:
        pass  # a 503 while replaying is fine: the polling below decides

started = time.monotonic()
threading.Thread(target=attach, daemon=True).start()
while True:
    topics = json.load(urllib.request.urlopen(f"{url}/v1/topics", timeout=10))["topics"]
    found = next((t for t in topics if t["name"] == topic), None)
    if found and found["state"] == "ready" and found["lag"] == 0:
        break
    if time.monotonic() - started > 600:
        sys.exit("the replay did not finish in 600 s")
    time.sleep(0.01)
print(json.dumps({"seconds": time.monotonic() - started, "records": found["applied_offset"],
                  "keys": found["keys"], "bytes": found["bytes"]}))
EOF
  rss_after="$(rss_kib "$kv_pid")"
  echo "{\"rss_before_kib\": $rss_before, \"rss_after_kib\": $rss_after}" >"$work/memory-$round.json"
  python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print("    %d records in %.2f s" % (r["records"], r["seconds"]))' "$work/replay-$round.json" >&2
  step "10/15 round $round/$rounds: memory of the replica"
  echo "    VmRSS $rss_before KiB before attaching, $rss_after KiB after the replay" >&2
  stop "$kv_pid"
done

step "11/15 kvstore GET, 64 clients, $get_keys keys (prefilled), while the same server replays the replay topic"
kvstore_server get-during-replay
bench get-during-replay --url "$kv_url" --topic get-during-replay --scenario get \
  --concurrency 64 --keys "$get_keys" --prefill --while-replaying replay --value-size "$value_size"
stop "$kv_pid"

step "12/15 watch: a PUT on one replica acknowledged, then its event at a watcher on another, 1 client"
start_broker
kvstore_server watch-writer
writer_pid="$kv_pid" writer_url="$kv_url"
kvstore_server watch-follower
curl -sf -o /dev/null -X PUT --data-binary x "$writer_url/v1/watch-delivery/keys/attach"
curl -s -o /dev/null "$kv_url/v1/watch-delivery/keys/attach"
bench watch-delivery --url "$writer_url" --watch-url "$kv_url" --topic watch-delivery \
  --scenario watch --concurrency 1 --duration "${seconds}s" --value-size "$value_size"
stop "$kv_pid"
stop "$writer_pid"

# PUT throughput with 1,000 watchers on the replica against the same run without, in rounds:
# watchers of one key each (each write has one watcher), then watchers of the whole topic
# (each write goes to all of them). The watchers' memory is read while they are open and idle,
# before the PUTs start.
watchers=1000
for round in $(seq "$rounds"); do
  start_broker
  kvstore_server "watchers-$round"
  step "13/15 round $round/$rounds: kvstore PUT, 16 clients, $watchers keys, no watchers"
  bench "put-unwatched-$round" --url "$kv_url" --topic "watchers-$round" --scenario put \
    --concurrency 16 --keys "$watchers" --duration "${seconds}s" --value-size "$value_size"
  step "13/15 round $round/$rounds: the same with $watchers watchers on the replica, one key each"
  rss_before="$(rss_kib "$kv_pid")"
  (sleep 4 && rss_kib "$kv_pid" >"$work/watchers-rss-$round") &
  bench "watched-own-$round" --url "$kv_url" --topic "watchers-$round" --scenario watch \
    --watchers "$watchers" --watch-own-key --watch-idle 6s --concurrency 16 --keys "$watchers" \
    --duration "${seconds}s" --value-size "$value_size"
  echo "{\"watchers\": $watchers, \"rss_before_kib\": $rss_before, \"rss_open_kib\": $(cat "$work/watchers-rss-$round")}" \
    >"$work/watchers-memory-$round.json"
  step "14/15 round $round/$rounds: memory of $watchers open watchers"
  echo "    VmRSS $rss_before KiB before, $(cat "$work/watchers-rss-$round") KiB with them open" >&2
  step "13/15 round $round/$rounds: the same with $watchers watchers of the whole topic"
  bench "watched-all-$round" --url "$kv_url" --topic "watchers-$round" --scenario watch \
    --watchers "$watchers" --concurrency 16 --keys "$watchers" --duration "${seconds}s" \
    --value-size "$value_size"
  stop "$kv_pid"
done

if [ "$broker_kind" = tansu ]; then
  broker_version="Tansu $(sed -n 's/^tansu broker //p' "$work/tansu.log" | head -1)"
fi
cpu_model="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
python3 - "$work/machine.json" <<EOF
import json, sys
json.dump({
    "date": "$(date -u '+%Y-%m-%d %H:%M UTC')",
    "cores": $(nproc),
    "memory_kib": $(awk '/^MemTotal:/ { print $2 }' /proc/meminfo),
    "cpu": "${cpu_model:-unknown CPU}",
    "kernel": "$(uname -sr)",
    "kvstore": "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)",
    "etcd": "$(etcd --version | awk '/^etcd Version/ { print $3 }')",
    "broker": "$broker_version",
    "broker_kind": "$broker_kind",
    "broker_notes": "$broker_notes",
    "seconds_per_scenario": $seconds,
    "value_size": $value_size,
    "get_keys": $get_keys,
    "load_at_start": "$load_at_start",
    "load_at_end": "$(load_average)",
    "run_seconds": $(($(date +%s) - started)),
}, open(sys.argv[1], "w"))
EOF

mkdir -p "$(dirname "$output")"
python3 scripts/bench_report.py "$work" >"$output"
printf '\n' >&2
cat "$output"
