# What scripts/bench.sh (`make bench`) and scripts/bench-compare.sh (`make bench-compare`)
# share, sourced by both from the repository's root: a scratch folder whose servers and broker
# are stopped on exit, free loopback ports, one Apache Kafka node warmed up the same way, and
# kvstore servers and `kvstore bench` runs whose JSON reports land in that folder.
#
# The functions read these globals, which the sourcing script sets:
#   kvstore      the binary that runs `kvstore bench` (and the servers, unless told otherwise)
#   broker       the bootstrap servers the servers use (start_kafka sets it)
#   server_env   NAME=VALUE settings for the servers' environment (may be empty)
# and these, which start_work sets: work (the scratch folder) and pids (what to stop on exit).
# shellcheck shell=bash disable=SC2034,SC2154 # globals set here are read there, and the reverse

# Every scenario writes values of this many bytes and reads a key space of this many keys.
value_size=100
get_keys=100000

# start_work NAME: a fresh scratch folder; on exit, stops every process in pids and the broker,
# and removes the folder, or keeps it, with its logs, when the script failed.
start_work() {
  work="$(mktemp -d -t "kvstore-$1.XXXXXX")"
  pids=()
  # shellcheck disable=SC2064 # $1 now, not at exit
  trap "finish '$1'" EXIT
}

finish() {
  local status=$?
  for pid in "${pids[@]}"; do stop "$pid"; done
  scripts/kafka.sh stop "$work/kafka" >/dev/null 2>&1 || true
  if [ "$status" -eq 0 ]; then
    rm -rf "$work"
  else
    echo "make $1 failed; logs and results so far are in $work" >&2
  fi
}

stop() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for_port() {
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on port $1 after 10 s" >&2
  return 1
}

wait_for_url() {
  for _ in $(seq 300); do
    curl -sf -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "$1 did not answer in 30 s" >&2
  return 1
}

step() {
  printf '\n== %s\n' "$*" >&2
}

load_average() {
  cut -d' ' -f1-3 /proc/loadavg
}

# bench NAME ARGS...: one `kvstore bench` run; its JSON report goes to $work/NAME.json, and a
# line of it to stderr.
bench() {
  local name="$1"
  shift
  "$kvstore" bench --json "$@" >"$work/$name.json"
  python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print("   ", round(r["operations_per_second"]), r["unit"] + "/s", ("p50 %.3f ms, p99 %.3f ms" % (r["latency_ms"]["p50"], r["latency_ms"]["p99"])) if r["latency_ms"] else "", ("errors %s" % r["errors"]) if r["errors"] else "")' "$work/$name.json" >&2
}

# kvstore_server NAME [BINARY]: starts a kvstore server (BINARY, default $kvstore) against the
# broker, its log in $work/NAME.log; sets kv_pid and kv_url once it is ready.
kvstore_server() {
  local port
  port="$(free_port)"
  env "${server_env[@]}" "${2:-$kvstore}" serve --listen "127.0.0.1:$port" --brokers "$broker" \
    --log-level warn >"$work/$1.log" 2>&1 &
  kv_pid=$!
  pids+=("$kv_pid")
  kv_url="http://127.0.0.1:$port"
  wait_for_url "$kv_url/readyz"
}

# start_kafka: one Apache Kafka node in $work/kafka on free ports, with kafka.sh's settings (the
# broker the tests run); sets broker. Its JIT compiler takes a while to warm up, so 10 s of
# 64-client PUTs go through it first, not measured.
start_kafka() {
  # --owner: the broker stops even if the script is killed before its trap runs.
  broker="$(scripts/kafka.sh start "$work/kafka" --owner $$)"
  step "warming up Apache Kafka $(scripts/kafka.sh version): 10 s of 64-client PUTs, not measured"
  kvstore_server warm-up
  "$kvstore" bench --url "$kv_url" --topic warm-up --scenario put --concurrency 64 \
    --duration 10s --value-size "$value_size" >/dev/null
  stop "$kv_pid"
}
