#!/usr/bin/env bash
# Local dev stack without Docker: a single-node Kafka (KRaft) broker run straight
# from Maven-fetched jars, and a private Redis. Both bind to 127.0.0.1 only.
#
#   deploy/local/stack.sh up              start what is not running, wait until usable
#   deploy/local/stack.sh down [--purge]  stop both; --purge (or PURGE=1) also deletes STACK_DIR
#   deploy/local/stack.sh status          one line per service; exit 0 if both up, 3 otherwise
#
# Environment (defaults in brackets):
#   STACK_DIR [<repo>/.stack]   data, logs and pid files
#   KAFKA_PORT [9092]  KAFKA_CONTROLLER_PORT [9093]  KAFKA_HEAP [768m]
#   KAFKA_START_TIMEOUT [120]  REDIS_PORT [6379]  REDIS_START_TIMEOUT [30]
#   STOP_TIMEOUT [30]   seconds to wait after SIGTERM before SIGKILL
#
# Running a second, independent stack only needs other ports and another STACK_DIR.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HERE/../.." && pwd)"
KAFKA_POM_DIR="$REPO_ROOT/deploy/kafka"

STACK_DIR="${STACK_DIR:-$REPO_ROOT/.stack}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_HEAP="${KAFKA_HEAP:-768m}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-120}"
REDIS_PORT="${REDIS_PORT:-6379}"
REDIS_START_TIMEOUT="${REDIS_START_TIMEOUT:-30}"
STOP_TIMEOUT="${STOP_TIMEOUT:-30}"

# The line Kafka 4.1 logs (from kafka.server.KafkaRaftServer) once broker and
# controller have both finished starting, e.g.
#   INFO [KafkaRaftServer nodeId=1] Kafka Server started (kafka.server.KafkaRaftServer)
# The port alone is not enough: it is bound well before the broker serves requests.
KAFKA_READY_LINE="Kafka Server started"

# Marker file: present when this script created STACK_DIR (see lock_stack_dir).
STACK_MARKER=".created-by-stack.sh"

# ---------------------------------------------------------------------------
# small helpers

log()  { printf '%s\n' "$*" >&2; }
die()  { printf 'stack.sh: error: %s\n' "$*" >&2; exit 1; }

# True if the process exists and is not a zombie. A broker that dies while `up`
# waits stays a zombie child of this script, and `kill -0` would still succeed.
pid_alive() {
  local pid="$1" state
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
  state="$(awk '/^State:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)"
  [[ -n "$state" && "$state" != Z ]]
}

read_pid() { [[ -f "$1" ]] && tr -dc '0-9' <"$1" || true; }

cmdline_of() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true; }

# Something accepts TCP connections on 127.0.0.1:$1 (bash's /dev/tcp, no nc needed).
port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# One line naming the port's current owner, if `ss` can tell us (best effort).
port_owner() {
  command -v ss >/dev/null || return 0
  ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'users:(([^)]*))' | head -n1 || true
}

require_free_port() {
  local port="$1" var="$2"
  if port_open "$port"; then
    local owner; owner="$(port_owner "$port")"
    die "port $port ($var) is already in use by something that is not this stack${owner:+ ($owner)}; stop it or set $var to another port"
  fi
}

now_ms() { date +%s%3N; }

# Milliseconds elapsed since $1 (from now_ms), as "12.3s".
elapsed() { local ms=$(( $(now_ms) - $1 )); printf '%d.%ds' $(( ms / 1000 )) $(( ms % 1000 / 100 )); }

# Waits up to $2 seconds for the command "$3..." to succeed, printing a dot per
# second on stderr. Returns 1 on timeout, 2 if process $1 died meanwhile
# (pass "-" when there is no pid to watch).
wait_until() {
  local pid="$1" timeout="$2"; shift 2
  local start=$SECONDS tick=0
  # Poll 5x a second (Redis is usually up in milliseconds), print a dot per second.
  while ! "$@"; do
    if [[ "$pid" != - ]] && ! pid_alive "$pid"; then printf '\n' >&2; return 2; fi
    if (( SECONDS - start >= timeout )); then printf '\n' >&2; return 1; fi
    if (( ++tick % 5 == 0 )); then printf '.' >&2; fi
    sleep 0.2
  done
  printf '\n' >&2
}

# Sends SIGTERM, waits up to STOP_TIMEOUT seconds, then SIGKILLs.
stop_pid() {
  local name="$1" pid="$2" i
  kill -TERM "$pid" 2>/dev/null || return 0
  for (( i = 0; i < STOP_TIMEOUT * 5; i++ )); do
    pid_alive "$pid" || return 0
    sleep 0.2
  done
  log "$name (pid $pid) did not exit within ${STOP_TIMEOUT}s after SIGTERM; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for (( i = 0; i < 50; i++ )); do pid_alive "$pid" || return 0; sleep 0.1; done
}

# Replaces @KEY@ placeholders in template $1 with the values given as KEY=VALUE.
render() {
  local tmpl="$1" out="$2" sed_args=() kv key val; shift 2
  for kv in "$@"; do
    key="${kv%%=*}"; val="${kv#*=}"
    val="$(printf '%s' "$val" | sed 's/[\\|&]/\\&/g')"   # escape for sed's replacement
    sed_args+=(-e "s|@${key}@|${val}|g")
  done
  sed "${sed_args[@]}" "$tmpl" >"$out"
}

# Serialise concurrent runs against the same STACK_DIR (two `up`s racing would
# both see "not running" and start two brokers on the same data). The lock is
# fd 9; long-lived children must be started with 9>&- or they would inherit it
# and hold the lock for as long as they run.
lock_stack_dir() {
  # Remember whether this script created STACK_DIR: only then may `down --purge`
  # delete all of it (the worker and demo keep their state in it too).
  if [[ ! -d "$STACK_DIR" || -z "$(ls -A "$STACK_DIR" 2>/dev/null)" ]]; then
    mkdir -p "$STACK_DIR"
    touch "$STACK_DIR/$STACK_MARKER"
  fi
  STACK_DIR="$(cd "$STACK_DIR" && pwd)"   # Kafka and log4j need absolute paths
  exec 9>"$STACK_DIR/.lock"
  if ! flock -n 9; then
    log "another stack.sh is running on $STACK_DIR; waiting for it..."
    flock 9
  fi
}

# ---------------------------------------------------------------------------
# prerequisites

require_java() {
  command -v java >/dev/null \
    || die "java not found: Kafka needs a Java 17+ runtime (Debian: apt-get install -y openjdk-17-jre-headless)"
  local v
  v="$(java -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2}')"
  [[ "${v%%.*}" =~ ^[0-9]+$ ]] && (( ${v%%.*} >= 17 )) \
    || die "java $v found but Kafka 4 needs Java 17+ (Debian: apt-get install -y openjdk-17-jre-headless)"
}

kafka_version() {
  sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$KAFKA_POM_DIR/pom.xml" | head -n1
}

# Fetches the broker jars with Maven unless they are already there. The marker
# file is written only after a successful copy, so an interrupted download is
# retried instead of leaving a half-filled class path.
ensure_kafka_jars() {
  if [[ -f "$KAFKA_LIB/.complete" ]]; then return 0; fi
  command -v mvn >/dev/null \
    || die "mvn not found: it is needed once to fetch the Kafka jars into $KAFKA_LIB (Debian: apt-get install -y maven)"
  log "kafka: fetching Kafka $KAFKA_VERSION jars with Maven into ${KAFKA_LIB#"$REPO_ROOT"/} ..."
  mkdir -p "$KAFKA_DIR"
  # Output goes to a file: Debian's Maven 3.8 prints ANSI escapes even with -B -q.
  if ! (cd "$KAFKA_POM_DIR" && mvn -B -q -Dkafka.lib.dir="$KAFKA_LIB" dependency:copy-dependencies) \
       >"$KAFKA_DIR/mvn.log" 2>&1; then
    tail -n 20 "$KAFKA_DIR/mvn.log" >&2
    die "Maven could not fetch the Kafka jars (full output: $KAFKA_DIR/mvn.log)"
  fi
  [[ -f "$KAFKA_LIB/kafka_2.13-$KAFKA_VERSION.jar" ]] \
    || die "Maven finished but $KAFKA_LIB/kafka_2.13-$KAFKA_VERSION.jar is missing"
  touch "$KAFKA_LIB/.complete"
}

# Installs Debian's redis-server package if the binary is missing. Note that on a
# systemd machine the package also starts a system redis on 6379; this script
# never touches that one (use REDIS_PORT to run beside it).
ensure_redis() {
  # One place installs Debian packages for the project: tools.sh.
  bash "$HERE/tools.sh" redis-server redis-cli || die "could not install redis-server"
}

# ---------------------------------------------------------------------------
# Kafka

kafka_paths() {
  KAFKA_VERSION="$(kafka_version)"
  [[ -n "$KAFKA_VERSION" ]] || die "could not read <kafka.version> from $KAFKA_POM_DIR/pom.xml"
  KAFKA_LIB="$REPO_ROOT/.cache/kafka/lib-$KAFKA_VERSION"
  KAFKA_DIR="$STACK_DIR/kafka"
  KAFKA_DATA="$KAFKA_DIR/data"
  KAFKA_LOGS="$KAFKA_DIR/logs"
  KAFKA_PROPS="$KAFKA_DIR/server.properties"
  KAFKA_PID="$KAFKA_DIR/kafka.pid"
  KAFKA_LOG="$KAFKA_LOGS/server.log"
  KAFKA_OUT="$KAFKA_LOGS/kafka.out"
}

# Prints the pid of our broker if it runs. "Ours" = the pid file's process is a
# kafka.Kafka JVM started with this STACK_DIR's server.properties (guards against
# a stale pid file whose pid was reused by something else).
kafka_pid() {
  local pid; pid="$(read_pid "$KAFKA_PID")"
  pid_alive "$pid" && [[ "$(cmdline_of "$pid")" == *"kafka.Kafka $KAFKA_PROPS"* ]] && echo "$pid"
  return 0
}

# The port the running broker was configured with (may differ from $KAFKA_PORT).
kafka_running_port() {
  sed -n 's|^advertised.listeners=PLAINTEXT://127.0.0.1:\([0-9]*\).*|\1|p' "$KAFKA_PROPS" 2>/dev/null || true
}

kafka_ready() {
  port_open "$1" && grep -qF "$KAFKA_READY_LINE" "$KAFKA_LOG" 2>/dev/null
}

# Runs Kafka's StorageTool. No log4j config on purpose: log4j's built-in default
# (errors only, to the console) keeps its huge INFO config dump out of server.log.
kafka_tool() { java -cp "$KAFKA_LIB/*" kafka.tools.StorageTool "$@"; }

# KRaft refuses to start on unformatted storage. Formatting is done once per data
# dir; the cluster id is kept in a file so a retried format uses the same one.
kafka_format_once() {
  [[ -f "$KAFKA_DATA/meta.properties" ]] && return 0
  local id_file="$KAFKA_DIR/cluster.id"
  if [[ ! -s "$id_file" ]]; then
    kafka_tool random-uuid >"$id_file" || die "kafka.tools.StorageTool random-uuid failed"
  fi
  kafka_tool format -t "$(cat "$id_file")" -c "$KAFKA_PROPS" --ignore-formatted >"$KAFKA_LOGS/format.log" 2>&1 \
    || { cat "$KAFKA_LOGS/format.log" >&2; die "formatting Kafka storage in $KAFKA_DATA failed"; }
}

kafka_fail() {
  if [[ -s "$KAFKA_LOG" ]]; then
    log "stack.sh: error: $1; last 20 lines of $KAFKA_LOG:"
    tail -n 20 "$KAFKA_LOG" >&2
  else
    log "stack.sh: error: $1; $KAFKA_LOG is empty"
  fi
  if [[ -s "$KAFKA_OUT" ]]; then log "--- $KAFKA_OUT:"; tail -n 20 "$KAFKA_OUT" >&2; fi
  exit 1
}

kafka_preflight() {
  local pid; pid="$(kafka_pid)"
  if [[ -n "$pid" ]]; then return 0; fi
  require_free_port "$KAFKA_PORT" KAFKA_PORT
  require_free_port "$KAFKA_CONTROLLER_PORT" KAFKA_CONTROLLER_PORT
  ensure_kafka_jars
}

kafka_up() {
  local pid port t0 rc=0
  pid="$(kafka_pid)"
  if [[ -n "$pid" ]]; then
    port="$(kafka_running_port)"
    [[ "$port" == "$KAFKA_PORT" ]] \
      || log "kafka: note: running on port $port, not KAFKA_PORT=$KAFKA_PORT; run 'down' first to change it"
    # Only waits if an earlier `up` was interrupted while the broker was starting.
    if ! kafka_ready "$port"; then
      printf 'kafka: running (pid %s) but not ready yet, waiting ' "$pid" >&2
      wait_until "$pid" "$KAFKA_START_TIMEOUT" kafka_ready "$port" || rc=$?
      (( rc == 0 )) || kafka_fail "Kafka (pid $pid) is running but not ready after ${KAFKA_START_TIMEOUT}s"
    fi
    log "kafka: already running (pid $pid, 127.0.0.1:$port)"
    return 0
  fi

  mkdir -p "$KAFKA_DATA" "$KAFKA_LOGS"
  rm -f "$KAFKA_PID"
  render "$HERE/kafka-server.properties.in" "$KAFKA_PROPS" \
    KAFKA_PORT="$KAFKA_PORT" KAFKA_CONTROLLER_PORT="$KAFKA_CONTROLLER_PORT" KAFKA_DATA_DIR="$KAFKA_DATA"
  kafka_format_once

  # A fresh server.log per run, so the readiness grep cannot match a previous run.
  [[ -f "$KAFKA_LOG" ]] && mv -f "$KAFKA_LOG" "$KAFKA_LOG.prev"

  t0="$(now_ms)"
  log "kafka: starting Kafka $KAFKA_VERSION on 127.0.0.1:$KAFKA_PORT (controller $KAFKA_CONTROLLER_PORT, heap $KAFKA_HEAP)"
  # setsid: own session, so the broker never gets the terminal's Ctrl-C/hangup.
  # The tiny bash wrapper records the final pid (exec keeps it) in the pid file.
  nohup setsid bash -c 'echo $$ >"$0"; exec "$@"' "$KAFKA_PID" \
    java -Xms256m -Xmx"$KAFKA_HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
      -Djava.awt.headless=true \
      -Dlog4j2.configurationFile="$HERE/kafka-log4j2.properties" \
      -Dkafka.logs.dir="$KAFKA_LOGS" \
      -cp "$KAFKA_LIB/*" kafka.Kafka "$KAFKA_PROPS" \
    >"$KAFKA_OUT" 2>&1 </dev/null 9>&- &
  local launcher=$!

  # The pid file appears within milliseconds; until then track the launcher.
  for _ in {1..50}; do [[ -s "$KAFKA_PID" ]] && break; sleep 0.1; done
  pid="$(read_pid "$KAFKA_PID")"; pid="${pid:-$launcher}"

  printf 'kafka: waiting for "%s" and port %s ' "$KAFKA_READY_LINE" "$KAFKA_PORT" >&2
  wait_until "$pid" "$KAFKA_START_TIMEOUT" kafka_ready "$KAFKA_PORT" || rc=$?
  case "$rc" in
    0) log "kafka: ready (pid $pid, 127.0.0.1:$KAFKA_PORT) in $(elapsed "$t0")" ;;
    2) rm -f "$KAFKA_PID"; kafka_fail "Kafka exited during startup" ;;
    *) # Do not leave a half-started broker behind a failed `up`.
       stop_pid kafka "$pid"; rm -f "$KAFKA_PID"
       kafka_fail "Kafka not ready after ${KAFKA_START_TIMEOUT}s (stopped it)" ;;
  esac
}

# ---------------------------------------------------------------------------
# Redis

redis_paths() {
  REDIS_DIR="$STACK_DIR/redis"
  REDIS_DATA="$REDIS_DIR/data"
  REDIS_PID="$REDIS_DIR/redis.pid"
  REDIS_LOG="$REDIS_DIR/redis.log"
  REDIS_PORT_FILE="$REDIS_DIR/port"
}

# Redis rewrites its process title to "redis-server 127.0.0.1:<port>"; matching
# it guards against a stale pid file whose pid now belongs to something else.
redis_pid() {
  local pid port; pid="$(read_pid "$REDIS_PID")"; port="$(redis_running_port)"
  pid_alive "$pid" && [[ "$(cmdline_of "$pid")" == *"redis-server"*":$port"* ]] && echo "$pid"
  return 0
}

redis_running_port() { cat "$REDIS_PORT_FILE" 2>/dev/null || true; }

redis_ready() { [[ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" == PONG ]]; }

redis_preflight() {
  [[ -n "$(redis_pid)" ]] && return 0
  require_free_port "$REDIS_PORT" REDIS_PORT
  ensure_redis
}

# Redis daemonizes itself, so its pid only appears (in the pid file) once it
# has bound the port; until then we track readiness by PING alone.
redis_started() { [[ -s "$REDIS_PID" ]] && redis_ready "$REDIS_PORT"; }

redis_up() {
  local pid port t0 rc=0
  pid="$(redis_pid)"
  if [[ -n "$pid" ]]; then
    port="$(redis_running_port)"
    [[ "$port" == "$REDIS_PORT" ]] \
      || log "redis: note: running on port $port, not REDIS_PORT=$REDIS_PORT; run 'down' first to change it"
    redis_ready "$port" || die "redis (pid $pid) is running but does not answer PING on port $port; see $REDIS_LOG"
    log "redis: already running (pid $pid, 127.0.0.1:$port)"
    return 0
  fi

  mkdir -p "$REDIS_DATA"
  rm -f "$REDIS_PID"
  echo "$REDIS_PORT" >"$REDIS_PORT_FILE"
  t0="$(now_ms)"
  log "redis: starting on 127.0.0.1:$REDIS_PORT"
  # No config file on purpose: /etc/redis/redis.conf belongs to the system service.
  # No persistence: Redis is a cache/read model here, rebuilt from Kafka.
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes \
    --pidfile "$REDIS_PID" --logfile "$REDIS_LOG" --dir "$REDIS_DATA" \
    --save "" --appendonly no 9>&- \
    || die "redis-server failed to start; see $REDIS_LOG"

  printf 'redis: waiting for PONG on port %s ' "$REDIS_PORT" >&2
  # The daemon's pid is unknown until it writes the pid file, so a crash after
  # the fork shows up as a timeout (config errors already failed above).
  wait_until - "$REDIS_START_TIMEOUT" redis_started || rc=$?
  if (( rc != 0 )); then
    log "stack.sh: error: Redis did not answer PING on port $REDIS_PORT within ${REDIS_START_TIMEOUT}s; last 20 lines of $REDIS_LOG:"
    tail -n 20 "$REDIS_LOG" >&2 2>/dev/null || true
    exit 1
  fi
  log "redis: ready (pid $(read_pid "$REDIS_PID"), 127.0.0.1:$REDIS_PORT) in $(elapsed "$t0")"
}

# ---------------------------------------------------------------------------
# stopping and status, the same for both services: <name>_pid, <name>_running_port
# and <name>_ready say how to find and ask each one.

# service_down NAME PIDFILE
service_down() {
  local name="$1" pid; pid="$("${name}_pid")"
  if [[ -n "$pid" ]]; then
    log "$name: stopping (pid $pid)..."
    stop_pid "$name" "$pid"
    log "$name: stopped"
  else
    log "$name: not running"
  fi
  rm -f "$2"
}

# service_status NAME: one line; non-zero unless it runs and answers.
service_status() {
  local name="$1" pid port; pid="$("${name}_pid")"
  if [[ -z "$pid" ]]; then echo "$name: stopped"; return 1; fi
  port="$("${name}_running_port")"
  if "${name}_ready" "$port"; then
    echo "$name: running (pid $pid, 127.0.0.1:$port)"
  else
    echo "$name: running but not answering (pid $pid, 127.0.0.1:$port)"; return 1
  fi
}

# ---------------------------------------------------------------------------
# commands

check_distinct_ports() {
  local p seen=" "
  for p in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" "$REDIS_PORT"; do
    [[ "$p" =~ ^[0-9]+$ ]] || die "port '$p' is not a number"
    [[ "$seen" != *" $p "* ]] || die "KAFKA_PORT, KAFKA_CONTROLLER_PORT and REDIS_PORT must differ (got $KAFKA_PORT/$KAFKA_CONTROLLER_PORT/$REDIS_PORT)"
    seen+="$p "
  done
}

cmd_up() {
  local t0; t0="$(now_ms)"
  check_distinct_ports
  require_java
  # Check everything before starting anything, so a port clash or a missing tool
  # does not leave half a stack running.
  kafka_preflight
  redis_preflight
  redis_up
  kafka_up
  log "stack up in $(elapsed "$t0") (data in $STACK_DIR)"
}

cmd_down() {
  local purge="${PURGE:-0}"
  [[ "${1:-}" == --purge ]] && purge=1
  service_down kafka "$KAFKA_PID"
  service_down redis "$REDIS_PID"
  [[ "$purge" == 1 ]] || return 0
  if [[ -f "$STACK_DIR/$STACK_MARKER" ]]; then
    # All of it: state others keep here (e.g. the worker's local tables) is
    # derived from Kafka and would be stale against a fresh broker.
    rm -rf "$STACK_DIR"
    log "purged $STACK_DIR"
  else
    # STACK_DIR existed before this script used it (someone may have pointed it
    # at a directory holding other things): delete only what we created.
    rm -rf "$KAFKA_DIR" "$REDIS_DIR"
    log "purged $KAFKA_DIR and $REDIS_DIR (left the rest of $STACK_DIR: this script did not create it)"
  fi
}

cmd_status() {
  local rc=0
  service_status kafka || rc=3
  service_status redis || rc=3
  return "$rc"
}

usage() { sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

main() {
  local cmd="${1:-}"; shift || true
  case "$cmd $*" in
    "up "|"down "|"down --purge"|"status ") ;;
    "-h "*|"--help "*|"help "*) usage; exit 0 ;;
    *) log "usage: $0 up | down [--purge] | status"; exit 2 ;;
  esac
  if [[ "$cmd" != up && ! -d "$STACK_DIR" ]]; then
    # Nothing was ever started here; do not create STACK_DIR just to say so.
    if [[ "$cmd" == status ]]; then echo "kafka: stopped"; echo "redis: stopped"; exit 3; fi
    log "kafka: not running"; log "redis: not running"; exit 0
  fi
  lock_stack_dir
  kafka_paths
  redis_paths
  case "$cmd" in
    up)     cmd_up ;;
    down)   cmd_down "$@" ;;
    status) cmd_status ;;
  esac
}

main "$@"
