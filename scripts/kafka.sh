#!/usr/bin/env bash
# Apache Kafka from its jars on Maven Central, in KRaft mode, without a tarball or Docker.
#
#   scripts/kafka.sh install                 resolve the jars once (cached) and print their folder
#   scripts/kafka.sh start DIR [options]     format and start a cluster in DIR, wait until every
#                                            node serves, print its bootstrap servers
#       --nodes N          broker nodes (default 1), each a controller too unless --controllers
#       --controllers N    N controller-only nodes besides the brokers (default 0), numbered
#                          after them: the quorum then outlives the brokers
#       --ports LIST       the ports to listen on, two a node (clients, controller), comma
#                          separated: 9092,9093 for one node (default: free ports)
#       --owner PID        stop the cluster once process PID has gone (tests, `make test`)
#       --set KEY=VALUE    a broker setting, added to every node's server.properties
#       --scram USER:PASS  a SCRAM-SHA-256 and -512 user, created when the storage is formatted
#   scripts/kafka.sh stop DIR                stop every node together (SIGKILL after 20 s;
#                                            KAFKA_STOP_SIGNAL=KILL at once)
#   scripts/kafka.sh kill DIR N              SIGKILL node N (1-based)
#   scripts/kafka.sh restart DIR [N]         start node N (or every stopped node) again with its
#                                            data, wait until it serves
#   scripts/kafka.sh bootstrap DIR           print the bootstrap servers of the cluster in DIR
#   scripts/kafka.sh tool NAME ARGS...       run one of Kafka's tools: topics, configs,
#                                            console-producer, console-consumer, get-offsets,
#                                            dump-log, or a main class
#
# A node's log is DIR/node-N/broker.log. The jars are cached in $KVSTORE_CACHE (default
# ~/.cache/kvstore), which needs `java` (17+) and, once, `mvn`.
set -euo pipefail

# The one place the Kafka version is written (docker-compose.yml's image must match it).
KAFKA_VERSION=4.1.1
# Kafka's own log4j version for this release (its gradle/dependencies.gradle); the SLF4J binding
# is in no Kafka POM, only in the tarball, and without it the broker logs nothing.
LOG4J_VERSION=2.24.3
DEPENDENCY_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.8.1

cache="${KVSTORE_CACHE:-$HOME/.cache/kvstore}"
lib="$cache/kafka-$KAFKA_VERSION/lib"
here="$(cd "$(dirname "$0")" && pwd)"

die() { echo "kafka.sh: $*" >&2; exit 1; }

install() {
  if [ -f "$lib/.complete" ]; then
    return
  fi
  command -v mvn >/dev/null || die "mvn is needed once, to fetch Kafka's jars from Maven Central"
  local project
  project="$(mktemp -d)"
  # connect-runtime (Jetty, Jersey) serves only the Connect tools, which kvstore never runs.
  cat >"$project/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>kvstore</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId>
      <version>$KAFKA_VERSION</version>
      <exclusions>
        <exclusion><groupId>org.apache.kafka</groupId><artifactId>connect-runtime</artifactId></exclusion>
      </exclusions>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId>
      <version>$LOG4J_VERSION</version>
    </dependency>
  </dependencies>
</project>
EOF
  echo "fetching Apache Kafka $KAFKA_VERSION's jars into $lib (once)" >&2
  rm -rf "$lib"
  mkdir -p "$lib"
  (cd "$project" && mvn -q -B "$DEPENDENCY_PLUGIN:copy-dependencies" \
    -DincludeScope=runtime -DoutputDirectory="$lib" >&2) || die "mvn could not fetch Kafka's jars"
  rm -rf "$project"
  touch "$lib/.complete"
}

# A log4j2 properties file (a YAML one would need jackson-dataformat-yaml as well).
write_log_config() {
  cat >"$1" <<'EOF'
status = warn
appender.file.type = Console
appender.file.name = OUT
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
# The request log and the state change log are noise for a test broker.
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
logger.controller.name = org.apache.kafka.controller
logger.controller.level = WARN
EOF
}

free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
sockets = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in sockets:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in sockets))
EOF
}

java_opts() {
  # A small heap, one GC thread and the C1 compiler only: a test broker starts faster on 2 cores
  # and needs little memory (measured: README, Brokers).
  echo "-Xms256m -Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto"
  echo "-Djava.awt.headless=true -Dlog4j2.configurationFile=$1"
}

start_node() {
  local dir="$1" node="$2"
  local home="$dir/node-$node"
  # shellcheck disable=SC2046
  nohup java $(java_opts "$dir/log4j2.properties") -cp "$lib/*" kafka.Kafka \
    "$home/server.properties" >>"$home/broker.log" 2>&1 </dev/null &
  echo $! >"$home/pid"
}

# Waits until node N has logged that it serves; its log's tail otherwise.
wait_node() {
  local dir="$1" node="$2" since="$3" deadline=$((SECONDS + ${KAFKA_START_TIMEOUT:-90}))
  local home="$dir/node-$node"
  while :; do
    if tail -c +"$since" "$home/broker.log" 2>/dev/null | grep -q "Kafka Server started"; then
      return
    fi
    if ! kill -0 "$(cat "$home/pid")" 2>/dev/null; then
      tail -n 40 "$home/broker.log" >&2
      die "node $node exited while starting (log: $home/broker.log)"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 40 "$home/broker.log" >&2
      die "node $node did not start within ${KAFKA_START_TIMEOUT:-90} s (log: $home/broker.log)"
    fi
    sleep 0.2
  done
}

log_size() { stat -c %s "$1" 2>/dev/null || echo 0; }

start() {
  local dir="" nodes=1 controllers=0 port_list="" owner="" settings=() scram=()
  dir="${1:-}"; [ -n "$dir" ] || die "usage: kafka.sh start DIR [options]"; shift
  while [ $# -gt 0 ]; do
    case "$1" in
      --nodes) nodes="$2"; shift 2 ;;
      --controllers) controllers="$2"; shift 2 ;;
      --ports) port_list="$2"; shift 2 ;;
      --owner) owner="$2"; shift 2 ;;
      --set) settings+=("$2"); shift 2 ;;
      --scram) scram+=("$2"); shift 2 ;;
      *) die "unknown option $1" ;;
    esac
  done
  install
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  [ ! -e "$dir/cluster.env" ] || die "$dir already holds a cluster; stop it and remove the folder"
  write_log_config "$dir/log4j2.properties"

  local total=$((nodes + controllers)) ports=()
  if [ -n "$port_list" ]; then
    IFS=, read -r -a ports <<<"$port_list"
    [ ${#ports[@]} -eq $((2 * total)) ] || die "--ports needs $((2 * total)) ports for $total nodes"
  else
    read -r -a ports <<<"$(free_ports $((2 * total)))"
  fi
  local voters="" bootstrap=""
  for ((n = 1; n <= total; n++)); do
    if [ "$controllers" -eq 0 ] || [ "$n" -gt "$nodes" ]; then
      voters+="${voters:+,}$n@127.0.0.1:${ports[$((2 * n - 1))]}"
    fi
    if [ "$n" -le "$nodes" ]; then
      bootstrap+="${bootstrap:+,}127.0.0.1:${ports[$((2 * n - 2))]}"
    fi
  done
  local replicas=$((nodes < 3 ? nodes : 3))
  local min_isr=$((replicas > 1 ? 2 : 1))
  local cluster_id
  # Not starting with "-", which the storage tool would take for an option (Kafka's own
  # Uuid.randomUuid() draws again for the same reason).
  cluster_id="$(python3 -c '
import base64, os
while (id := base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")).startswith("-"):
    pass
print(id)')"

  local format_args=()
  for user in "${scram[@]}"; do
    format_args+=(--add-scram "SCRAM-SHA-256=[name=${user%%:*},password=${user#*:}]")
    format_args+=(--add-scram "SCRAM-SHA-512=[name=${user%%:*},password=${user#*:}]")
  done
  local formats=()
  for ((n = 1; n <= total; n++)); do
    local home="$dir/node-$n" client="${ports[$((2 * n - 2))]}" controller="${ports[$((2 * n - 1))]}"
    mkdir -p "$home/data"
    {
      echo "node.id=$n"
      echo "controller.quorum.voters=$voters"
      if [ "$n" -gt "$nodes" ]; then
        echo "process.roles=controller"
        echo "listeners=CONTROLLER://127.0.0.1:$controller"
      elif [ "$controllers" -gt 0 ]; then
        echo "process.roles=broker"
        echo "listeners=PLAINTEXT://127.0.0.1:$client"
      else
        echo "process.roles=broker,controller"
        echo "listeners=PLAINTEXT://127.0.0.1:$client,CONTROLLER://127.0.0.1:$controller"
      fi
      if [ "$n" -le "$nodes" ]; then
        echo "advertised.listeners=PLAINTEXT://127.0.0.1:$client"
        echo "inter.broker.listener.name=PLAINTEXT"
      fi
      echo "controller.listener.names=CONTROLLER"
      echo "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT"
      echo "log.dirs=$home/data"
      # Internal topics: as replicated as the cluster allows, one partition (faster to create).
      echo "offsets.topic.replication.factor=$replicas"
      echo "offsets.topic.num.partitions=1"
      echo "transaction.state.log.replication.factor=$replicas"
      echo "transaction.state.log.min.isr=$min_isr"
      echo "transaction.state.log.num.partitions=1"
      echo "share.coordinator.state.topic.replication.factor=$replicas"
      echo "share.coordinator.state.topic.min.isr=$min_isr"
      echo "default.replication.factor=$replicas"
      echo "min.insync.replicas=$min_isr"
      echo "group.initial.rebalance.delay.ms=0"
      # A small machine: few threads, a small cleaner buffer (128 MiB of heap by default).
      echo "num.network.threads=2"
      echo "num.io.threads=2"
      echo "background.threads=2"
      echo "num.replica.fetchers=1"
      echo "log.cleaner.threads=1"
      echo "log.cleaner.dedupe.buffer.size=16777216"
      # The cleaner looks for work every half second instead of every 15 s, so that topics
      # configured to compact quickly (tests) are cleaned within seconds.
      echo "log.cleaner.backoff.ms=500"
      # A killed broker is fenced, and leaves the ISR, within a few seconds.
      echo "broker.heartbeat.interval.ms=500"
      echo "broker.session.timeout.ms=3000"
      echo "replica.lag.time.max.ms=5000"
      echo "replica.fetch.wait.max.ms=200"
      echo "leader.imbalance.check.interval.seconds=5"
      echo "controlled.shutdown.enable=true"
      # A transaction left open by a killed writer is aborted within a second of its timeout
      # instead of up to ten (the default check interval).
      echo "transaction.abort.timed.out.transaction.cleanup.interval.ms=1000"
      # Settings given for the brokers are no business of controller-only nodes.
      if [ "$n" -le "$nodes" ]; then
        for setting in "${settings[@]}"; do echo "$setting"; done
      fi
    } >"$home/server.properties"
    # Formatting starts a JVM per node: all at once.
    java $(java_opts "$dir/log4j2.properties") -cp "$lib/*" kafka.tools.StorageTool format \
      -t "$cluster_id" -c "$home/server.properties" "${format_args[@]}" >"$home/format.log" 2>&1 &
    formats+=($!)
  done
  for ((n = 1; n <= total; n++)); do
    wait "${formats[$((n - 1))]}" || { cat "$dir/node-$n/format.log" >&2; die "formatting node $n failed"; }
  done
  {
    echo "NODES=$total"
    echo "BOOTSTRAP=$bootstrap"
    echo "CLUSTER_ID=$cluster_id"
  } >"$dir/cluster.env"

  # A broker does not finish starting without a controller quorum: start all, then wait.
  for ((n = 1; n <= total; n++)); do start_node "$dir" "$n"; done
  if [ -n "$owner" ]; then
    # Stops the cluster once its owner has gone, however it went (a test binary killed by a
    # timeout runs no destructors).
    (
      while kill -0 "$owner" 2>/dev/null && [ -e "$dir/cluster.env" ]; do sleep 1; done
      "$here/kafka.sh" stop "$dir" >/dev/null 2>&1 || true
    ) </dev/null >/dev/null 2>&1 &
    disown
  fi
  for ((n = 1; n <= total; n++)); do wait_node "$dir" "$n" 0; done
  echo "$bootstrap"
}

pid_of() { cat "$1/node-$2/pid" 2>/dev/null || true; }

stop() {
  local dir="${1:?usage: kafka.sh stop DIR}"
  [ -e "$dir/cluster.env" ] || return 0
  # shellcheck disable=SC1091
  . "$dir/cluster.env"
  local pids=()
  for ((n = 1; n <= NODES; n++)); do
    local pid
    pid="$(pid_of "$dir" "$n")"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && pids+=("$pid")
  done
  # All together: a controlled shutdown waits for the quorum, which the others are part of.
  [ ${#pids[@]} -eq 0 ] || kill "-${KAFKA_STOP_SIGNAL:-TERM}" "${pids[@]}" 2>/dev/null || true
  local deadline=$((SECONDS + 20))
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null; do
      if [ "$SECONDS" -ge "$deadline" ]; then kill -KILL "$pid" 2>/dev/null || true; fi
      sleep 0.1
    done
  done
  rm -f "$dir/cluster.env"
}

kill_node() {
  local dir="${1:?usage: kafka.sh kill DIR N}" node="${2:?usage: kafka.sh kill DIR N}"
  local pid
  pid="$(pid_of "$dir" "$node")"
  [ -n "$pid" ] || die "no node $node in $dir"
  kill -KILL "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
}

restart_node() {
  local dir="${1:?usage: kafka.sh restart DIR [N]}" only="${2:-}"
  [ -e "$dir/cluster.env" ] || die "no cluster in $dir"
  # shellcheck disable=SC1091
  . "$dir/cluster.env"
  local nodes=() since=()
  for ((n = 1; n <= NODES; n++)); do
    [ -z "$only" ] || [ "$n" = "$only" ] || continue
    local pid
    pid="$(pid_of "$dir" "$n")"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      [ -z "$only" ] || die "node $n is running"
      continue
    fi
    nodes+=("$n")
    since+=($(($(log_size "$dir/node-$n/broker.log") + 1)))
  done
  # All before waiting on any: a node does not finish starting without a quorum.
  for n in "${nodes[@]}"; do start_node "$dir" "$n"; done
  for i in "${!nodes[@]}"; do wait_node "$dir" "${nodes[$i]}" "${since[$i]}"; done
}

tool() {
  local name="${1:?usage: kafka.sh tool NAME ARGS...}"; shift
  local class
  case "$name" in
    topics) class=org.apache.kafka.tools.TopicCommand ;;
    configs) class=kafka.admin.ConfigCommand ;;
    console-producer) class=org.apache.kafka.tools.ConsoleProducer ;;
    console-consumer) class=org.apache.kafka.tools.consumer.ConsoleConsumer ;;
    get-offsets) class=org.apache.kafka.tools.GetOffsetShell ;;
    dump-log) class=kafka.tools.DumpLogSegments ;;
    *) class="$name" ;;
  esac
  install
  # Warnings and errors only, on stderr, so that a tool's output stays its own. log4j takes a
  # file's format from its name: it must end in .properties.
  local config="$cache/kafka-$KAFKA_VERSION/tools-log4j2.properties"
  cat >"$config" <<'EOF'
status = warn
appender.err.type = Console
appender.err.name = ERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = %p %m%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = ERR
EOF
  exec java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Dlog4j2.configurationFile="$config" -cp "$lib/*" "$class" "$@"
}

case "${1:-}" in
  install) install; echo "$lib" ;;
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  kill) shift; kill_node "$@" ;;
  restart) shift; restart_node "$@" ;;
  bootstrap) shift; . "${1:?usage: kafka.sh bootstrap DIR}/cluster.env"; echo "$BOOTSTRAP" ;;
  tool) shift; tool "$@" ;;
  version) echo "$KAFKA_VERSION" ;;
  *) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
