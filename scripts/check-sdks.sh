#!/usr/bin/env bash
# `make check-sdks`: generates a client for each of four runtimes from openapi/openapi.json and
# runs its smoke program (sdks/LANGUAGE/) against a live kvstore over Apache Kafka. Prints a
# line per language and then `N passed, N failed`; exits 1 if any failed.
#
#   scripts/check-sdks.sh [LANGUAGE...]    typescript, go, java, python (default: all four)
#
#   typescript  openapi-typescript (types) + openapi-fetch (requests), type-checked by tsc
#   go          oapi-codegen (openapi/oapi-codegen.yaml), built by go
#   java        openapi-generator's Maven plugin, library okhttp-gson, compiled by Maven
#   python      openapi-python-client; its smoke program is tests/sdk/smoke.py, which
#               `make test` runs too
#
# Every tool is pinned (sdks/typescript/package-lock.json, the version below, sdks/java/pom.xml,
# scripts/openapi-python-client.sh) and installed once from its registry into $KVSTORE_CACHE
# (default ~/.cache/kvstore); Maven and Go keep their own caches (~/.m2, the Go module cache).
# The clients are generated and built in a temporary folder, never in the clone. The broker
# (scripts/kafka.sh) and target/debug/kvstore (built if missing) run on free loopback ports
# and are stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

OAPI_CODEGEN_VERSION=v2.8.2

cache="${KVSTORE_CACHE:-$HOME/.cache/kvstore}"
spec="$root/openapi/openapi.json"
languages=("$@")
[ ${#languages[@]} -gt 0 ] || languages=(typescript go java python)
mkdir -p "$cache"
work="$(mktemp -d)"
server_pid=""

cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [ -d "$work/kafka" ]; then
    scripts/kafka.sh stop "$work/kafka" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

say() { echo "check-sdks: $*" >&2; }

# Each language's build (tools, generation, compilation) into $work/LANGUAGE. Output goes to
# the caller's log.

build_typescript() {
  # node_modules is cached per lockfile and linked into the work folder.
  local lock modules
  lock="$(sha256sum sdks/typescript/package-lock.json | cut -c1-16)"
  modules="$cache/typescript-$lock"
  if [ ! -f "$modules/.complete" ]; then
    rm -rf "$modules"
    mkdir -p "$modules"
    cp sdks/typescript/package.json sdks/typescript/package-lock.json "$modules/"
    (cd "$modules" && npm ci --cache "$cache/npm" --no-audit --no-fund)
    touch "$modules/.complete"
  fi
  cp -r sdks/typescript "$work/typescript"
  ln -sfn "$modules/node_modules" "$work/typescript/node_modules"
  cd "$work/typescript"
  node_modules/.bin/openapi-typescript "$spec" --output generated/schema.d.ts
  node_modules/.bin/tsc --project .
}

build_go() {
  local oapi_codegen="$cache/oapi-codegen-$OAPI_CODEGEN_VERSION/oapi-codegen"
  if [ ! -x "$oapi_codegen" ]; then
    GOBIN="$(dirname "$oapi_codegen")" GOTOOLCHAIN=local \
      go install "github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen@$OAPI_CODEGEN_VERSION"
  fi
  cp -r sdks/go "$work/go"
  cd "$work/go"
  mkdir -p kvstore
  "$oapi_codegen" -config "$root/openapi/oapi-codegen.yaml" "$spec"
  GOTOOLCHAIN=local GOFLAGS=-mod=readonly go vet ./...
  GOTOOLCHAIN=local GOFLAGS=-mod=readonly go build -o sdk-smoke .
}

build_java() {
  cp -r sdks/java "$work/java"
  cd "$work/java"
  mvn --batch-mode --quiet -Dopenapi.spec="$spec" compile dependency:build-classpath \
    -Dmdep.outputFile=target/classpath
}

build_python() {
  local generator
  generator="$(scripts/openapi-python-client.sh)"
  mkdir -p "$work/python"
  # The generator formats its output with the ruff installed beside it.
  (cd "$work/python" && PATH="$(dirname "$generator"):$PATH" "$generator" generate --path "$spec" \
    --meta none --output-path kvstore_client) | tee "$work/python/generate.log"
  if grep -q '^WARNING' "$work/python/generate.log"; then
    echo "openapi-python-client warns about the document" >&2
    return 1
  fi
}

# Each language's smoke program against the server at $1, on a topic of its own.

smoke_typescript() { node "$work/typescript/dist/smoke.js" "$1" sdk-typescript; }
smoke_go() { "$work/go/sdk-smoke" "$1" sdk-go; }
smoke_java() {
  java -cp "$work/java/target/classes:$(cat "$work/java/target/classpath")" kvstore.smoke.Smoke "$1" sdk-java
}
smoke_python() {
  "$(dirname "$(scripts/openapi-python-client.sh)")/python" tests/sdk/smoke.py --url "$1" \
    --sdk "$work/python" --topic sdk-python
}

# The broker starts in the background while the clients build.
scripts/kafka.sh start "$work/kafka" --owner $$ >"$work/bootstrap" 2>"$work/kafka.log" &
broker_pid=$!

if [ ! -x target/debug/kvstore ]; then
  say "building target/debug/kvstore"
  cargo build --locked >&2
fi

declare -A built
for language in "${languages[@]}"; do
  if ! declare -F "build_$language" >/dev/null; then
    say "no such language: $language (typescript, go, java, python)"
    exit 2
  fi
  say "$language: generating and building"
  start=$SECONDS
  # Not under `if`, which would turn `set -e` off inside the function.
  set +e
  (set -e; "build_$language") >"$work/$language-build.log" 2>&1
  status=$?
  set -e
  if [ "$status" -eq 0 ]; then
    built[$language]=$((SECONDS - start))
  else
    built[$language]=failed
  fi
done

if ! wait "$broker_pid"; then
  cat "$work/kafka.log" >&2
  say "the Kafka broker did not start"
  exit 1
fi
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
url="http://127.0.0.1:$port"
# The server's defaults, whatever KVSTORE_* settings this shell has.
unset_settings=()
for name in $(compgen -e | grep '^KVSTORE_' || true); do
  unset_settings+=(-u "$name")
done
env "${unset_settings[@]}" -u RUST_LOG KVSTORE_LOG_LEVEL=warn target/debug/kvstore serve \
  --listen "127.0.0.1:$port" --brokers "$(cat "$work/bootstrap")" >"$work/kvstore.log" 2>&1 &
server_pid=$!
for _ in $(seq 300); do
  if curl --silent --fail --max-time 1 "$url/readyz" >/dev/null 2>&1; then
    break
  fi
  if ! kill -0 "$server_pid" 2>/dev/null; then
    cat "$work/kvstore.log" >&2
    say "kvstore exited"
    exit 1
  fi
  sleep 0.1
done

passed=0 failed=0
for language in "${languages[@]}"; do
  if [ "${built[$language]}" = failed ]; then
    echo "FAIL  $language: generating or building the client failed:"
    sed 's/^/      /' "$work/$language-build.log" | tail -40
    failed=$((failed + 1))
    continue
  fi
  start=$SECONDS
  if "smoke_$language" "$url" >"$work/$language-smoke.log" 2>&1; then
    checks="$(grep -c '^ok ' "$work/$language-smoke.log" || true)"
    echo "ok    $language: $checks checks passed (built in ${built[$language]} s, ran in $((SECONDS - start)) s)"
    passed=$((passed + 1))
  else
    echo "FAIL  $language: the smoke program failed:"
    sed 's/^/      /' "$work/$language-smoke.log" | tail -40
    failed=$((failed + 1))
  fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
