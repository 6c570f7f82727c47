#!/usr/bin/env bash
# The demo's journeys (deploy/local/demo.sh, DEMO_JOURNEYS):
#   demo_journeys.sh FOLDER   publish the journeys in FOLDER (versions already there stay as they are)
#   demo_journeys.sh ''       remove every journey version on the catalogue topic, so the worker runs
#                             the built-in rules alone: the topic is compacted, so the journeys an
#                             earlier demo published would otherwise run on. The next demo with
#                             journeys publishes them again.
# Uses the orchestrator CLI and its ORCH_* settings (ORCH_TOPIC_PREFIX, ORCH_KAFKA_BOOTSTRAP). Each
# command's own lines go to stderr; stdout gets one line saying what was done.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-.venv/bin}
folder=${1-}

if [[ -n $folder ]]; then
  $BIN/orchestrator journeys publish "$folder" >&2
  echo "published the journeys in $folder/"
  exit 0
fi

# One "id version" line per published version, from the same catalogue the workers build ('list'
# also shows versions with customers inside that the topic does not hold: "unpublished", nothing to remove).
versions=$($BIN/orchestrator journeys list --json \
  | $BIN/python -c 'import json, sys; [print(r["id"], r["version"]) for r in map(json.loads, sys.stdin) if r["status"] != "unpublished"]')
removed=0
while read -r id version; do
  [[ -n $id ]] || continue
  $BIN/orchestrator journeys remove "$id" "$version" </dev/null >&2
  removed=$((removed + 1))
done <<<"$versions"
echo "removed $removed published journey version(s): the rules run alone"
