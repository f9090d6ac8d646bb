#!/usr/bin/env bash
# `make bench-compare BASE=REV`: measures two builds of kvstore side by side on this machine,
# for changes that must not make it slower: the release build of REV (base) against the
# working tree's (head). Prints a Markdown table of both sides' medians and head's over base's,
# and writes it to target/bench-compare/BASE-vs-HEAD.md.
#
# One Apache Kafka node serves the whole run (scripts/bench-lib.sh, as for `make bench`). Each
# scenario runs in rounds, base then head in each, every run on a fresh server and topic; the
# load comes from head's `kvstore bench` for both sides, so that only the server differs.
#
#   BENCH_ROUNDS    rounds of every scenario (default 3)
#   BENCH_SECONDS   seconds a run (default 5)
#   BENCH_SCENARIOS the scenarios to run, by name, space separated (default all: see below)
#   CARGO           the cargo to build with (default cargo)
#
# REV's binary is built once in a worktree, target/bench-compare/COMMIT, into
# target/bench-compare/cargo, and kept as target/bench-compare/kvstore-COMMIT, which later runs
# with the same commit reuse.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh

base_rev="${1:-}"
rounds="${BENCH_ROUNDS:-3}"
seconds="${BENCH_SECONDS:-5}"
cargo="${CARGO:-cargo}"
cache=target/bench-compare

if [ -z "$base_rev" ]; then
  echo "usage: scripts/bench-compare.sh REV (make bench-compare BASE=REV)" >&2
  exit 2
fi
if ! [ "$rounds" -ge 1 ] 2>/dev/null || ! [ "$seconds" -ge 1 ] 2>/dev/null; then
  echo "BENCH_ROUNDS and BENCH_SECONDS must be positive whole numbers" >&2
  exit 2
fi
if ! base_commit="$(git rev-parse --verify --quiet "$base_rev^{commit}")"; then
  echo "BASE=$base_rev is no commit of this repository" >&2
  exit 2
fi

# The hot paths, each as `make bench` measures it where it has the row. A scenario's name is
# part of its result files' names.
all_scenarios=(put-1 put-64 get-64 range-16 cas-1 watch-1)

# scenario_args NAME: sets args to scenario NAME's `kvstore bench` options.
scenario_args() {
  case "$1" in
    put-1) args=(--scenario put --concurrency 1) ;;
    put-64) args=(--scenario put --concurrency 64) ;;
    get-64) args=(--scenario get --concurrency 64 --keys "$get_keys" --prefill) ;;
    range-16)
      args=(--scenario range --concurrency 16 --batch-size 100 --keys "$get_keys" --prefill) ;;
    cas-1) args=(--scenario cas --concurrency 1 --keys 1000) ;;
    # The watcher on the writing server itself: the watch route's delivery without a second
    # replica's fetch wait in it.
    watch-1) args=(--scenario watch --concurrency 1 --watchers 1) ;;
    *) echo "BENCH_SCENARIOS: no scenario $1 (the scenarios: ${all_scenarios[*]})" >&2; exit 2 ;;
  esac
}
read -r -a scenarios <<<"${BENCH_SCENARIOS:-${all_scenarios[*]}}"
for name in "${scenarios[@]}"; do scenario_args "$name"; done  # before minutes of building

base="$(git rev-parse --short "$base_commit")"
head="$(git rev-parse --short HEAD)"
head_subject="$(git log -1 --format=%s HEAD)"
# Head is the working tree, which is HEAD only when nothing is changed.
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  head="$head-dirty"
  head_subject="(uncommitted changes on) $head_subject"
fi
mkdir -p "$cache"

step "building head ($head): $cargo build --release --locked"
"$cargo" build --release --locked >&2

# build_base: sets base_bin to base's release binary, built if no earlier run kept it.
build_base() {
  base_bin="$cache/kvstore-$base_commit"
  if [ -x "$base_bin" ]; then
    step "base ($base): reusing $base_bin"
    return
  fi
  local tree="$cache/$base_commit" target="$PWD/$cache/cargo" build_started
  build_started=$(date +%s)
  step "building base ($base) in $tree"
  # A worktree removed without git (cargo clean, rm -rf target) leaves its registration behind,
  # which would refuse a new one at the same path.
  git worktree prune
  if [ ! -e "$tree/.git" ]; then
    rm -rf "$tree"
    git worktree add --quiet --detach "$tree" "$base_commit"
  fi
  # Base's first build starts from head's compiled dependencies (librdkafka and OpenSSL among
  # them): cargo rebuilds only what base's Cargo.lock does not share, 75 s here instead of 400.
  # -a keeps the files' times, by which cargo judges what is stale: with new ones it rebuilds all.
  if [ ! -d "$target/release" ] && [ -d target/release/deps ]; then
    mkdir -p "$target/release"
    cp -a --reflink=auto target/release/deps target/release/build target/release/.fingerprint \
      "$target/release/"
  fi
  # From inside the worktree, so that base's own cargo configuration applies.
  (cd "$tree" && CARGO_TARGET_DIR="$target" "$cargo" build --release --locked) >&2
  # Kept under a name of its own, whole: the shared target folder's binary is the next base's.
  cp "$target/release/kvstore" "$base_bin.partial"
  mv "$base_bin.partial" "$base_bin"
  echo "    base built in $(($(date +%s) - build_started)) s" >&2
}
build_base

start_work bench-compare
# Copies, so that a build during the run (of this tree or of another base) changes neither side.
kvstore="$work/kvstore-head"
cp target/release/kvstore "$kvstore"
declare -A server_bin=([base]="$base_bin" [head]="$kvstore") label=([base]="$base" [head]="$head")
broker=""
server_env=()

started=$(date +%s)
load_at_start="$(load_average)"
start_kafka

# Rounds outside, scenarios inside: a burst of other work on the machine then lands in one round
# of several scenarios, not in every round of one, and the medians set it aside.
runs=$((rounds * ${#scenarios[@]} * 2))
step "$runs runs of $seconds s, about $((runs * (seconds + 3) / 60 + 1)) min"
run=0
for round in $(seq "$rounds"); do
  for name in "${scenarios[@]}"; do
    scenario_args "$name"
    for side in base head; do
      run=$((run + 1))
      step "run $run/$runs, round $round/$rounds: $name, $side (${label[$side]})"
      kvstore_server "$name-$side-$round" "${server_bin[$side]}"
      bench "$name-$side-$round" --url "$kv_url" --topic "$name-$side-$round" "${args[@]}" \
        --duration "${seconds}s" --value-size "$value_size"
      stop "$kv_pid"
    done
  done
done

# Strings only, through argv: a commit's subject may hold any character.
python3 -c 'import json, sys; json.dump(dict(zip(sys.argv[2::2], sys.argv[3::2])), open(sys.argv[1], "w"))' \
  "$work/meta.json" \
  base "$base" base_subject "$(git log -1 --format=%s "$base_commit")" \
  head "$head" head_subject "$head_subject" \
  date "$(date -u '+%Y-%m-%d %H:%M UTC')" rounds "$rounds" seconds "$seconds" \
  broker "Apache Kafka $(scripts/kafka.sh version), one node" cores "$(nproc)" \
  load_at_start "$load_at_start" load_at_end "$(load_average)" \
  run_seconds "$(($(date +%s) - started))"

output="$cache/$base-vs-$head.md"
python3 scripts/bench_compare_report.py "$work" "${scenarios[@]}" >"$output"
printf '\n' >&2
cat "$output"
echo "(written to $output)" >&2
