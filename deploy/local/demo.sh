#!/usr/bin/env bash
# `make demo`: a worker, a traffic simulator and a live tail of the commands.
# Ctrl-C stops all three; the Kafka + Redis stack stays up (`make down` stops it).
set -euo pipefail
cd "$(dirname "$0")/../.."

BIN=.venv/bin
LOGS=${STACK_DIR:-.stack}/demo
export ORCH_WEB_PORT=${ORCH_WEB_PORT:-6066}
export ORCH_DATA_DIR=${ORCH_DATA_DIR:-${STACK_DIR:-.stack}/worker}
mkdir -p "$LOGS"
pids=()

stop() {
  trap - INT TERM EXIT
  echo
  echo "==> stopping the simulator and the worker"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  # A worker caught joining its group can take a session timeout to stop: give it 20 s.
  for _ in $(seq 1 40); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [[ $alive -eq 0 ]] && break
    sleep 0.5
  done
  for pid in "${pids[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      echo "==> $pid did not stop in 20 s: killing it (at least once: nothing is lost)" >&2
      pkill -KILL -P "$pid" 2>/dev/null || true
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
  echo "==> stopped. Kafka and Redis are still up: 'make down' stops them."
}
trap stop INT TERM EXIT

# The worker exits with 75 when a Faust rebalance hangs (agents/rebalance_watchdog.py);
# like Kubernetes or compose would, start it again. Any other exit ends the demo.
supervise_worker() {
  local child code
  trap 'kill -TERM "$child" 2>/dev/null; wait "$child"; exit 0' TERM INT
  while true; do
    $BIN/orchestrator worker >>"$LOGS/worker.log" 2>&1 &
    child=$!
    code=0
    wait "$child" || code=$?
    [[ $code -eq 75 ]] || exit "$code"
    echo "==> the worker's rebalance hung, so it exited; starting it again (log: $LOGS/worker.log)" >&2
  done
}

echo "==> starting a worker (log: $LOGS/worker.log, metrics: http://127.0.0.1:$ORCH_WEB_PORT/metrics)"
: >"$LOGS/worker.log"
supervise_worker &
pids+=($!)

printf "==> waiting for the worker to be ready "
for _ in $(seq 1 120); do
  if curl -fs "http://127.0.0.1:$ORCH_WEB_PORT/ready" >/dev/null 2>&1; then break; fi
  if ! kill -0 "${pids[0]}" 2>/dev/null; then
    echo; echo "error: the worker exited; last lines of $LOGS/worker.log:" >&2
    tail -n 20 "$LOGS/worker.log" >&2; exit 1
  fi
  printf "."; sleep 1
done
echo " ready"

# The shipped journeys run beside the built-in rules: the rules answer at once (an ad after a
# search), the journeys greet each sign-up (welcome, with its A/B split) and keep their waits.
# Publishing again is harmless: versions already on the topic are left as they are. With
# DEMO_JOURNEYS= the journeys an earlier demo published are removed (the catalogue topic is
# compacted, so they would run on), and the rules run alone.
DEMO_JOURNEYS=${DEMO_JOURNEYS-journeys}
if [[ -n $DEMO_JOURNEYS ]]; then
  echo "==> publishing the journeys in $DEMO_JOURNEYS/ (DEMO_JOURNEYS= to run the rules alone)"
  bash deploy/local/demo_journeys.sh "$DEMO_JOURNEYS" 2>>"$LOGS/journeys.log" >/dev/null \
    || echo "warning: publishing the journeys failed (see $LOGS/journeys.log)" >&2
else
  echo "==> DEMO_JOURNEYS= : removing the published journeys, so the rules run alone ('make demo' publishes them again)"
  if done_line=$(bash deploy/local/demo_journeys.sh "" 2>>"$LOGS/journeys.log"); then
    echo "==> $done_line (log: $LOGS/journeys.log)"
  else
    echo "warning: removing the published journeys failed, so they may still run (see $LOGS/journeys.log)" >&2
  fi
fi

echo "==> simulating customers on web, search, ads, email, store, app and social (log: $LOGS/simulator.log)"
$BIN/orchestrator simulate --rate "${DEMO_RATE:-4}" >"$LOGS/simulator.log" 2>&1 &
pids+=($!)

cat <<TIPS
==> commands as they are decided (Ctrl-C to stop). In another terminal try:
      .venv/bin/orchestrator customer <id from a line below>   # that customer's state from Redis
      .venv/bin/orchestrator explain <id from a line below>    # why they got (or did not get) each command
      .venv/bin/orchestrator journeys list                     # the journeys the worker runs
      curl -s localhost:$ORCH_WEB_PORT/metrics | grep ^orchestrator_
      kcat -b 127.0.0.1:9092 -C -t orchestrator.dlq -e -J   # what was refused, and why

TIPS
$BIN/orchestrator tail
