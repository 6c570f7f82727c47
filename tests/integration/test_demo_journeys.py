"""``make demo``'s journeys (deploy/local/demo_journeys.sh): DEMO_JOURNEYS= runs the rules alone,
also after an earlier demo left its journeys on the compacted catalogue topic."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import redis

from orchestrator.journeys.inside import entry, inside_key
from tests.integration.conftest import BOOTSTRAP, REDIS_URL
from tests.integration.harness import cli_env

ROOT = Path(__file__).parents[2]
SCRIPT = ROOT / "deploy" / "local" / "demo_journeys.sh"
SHIPPED = sorted(p for p in (ROOT / "journeys").glob("*.yaml"))


def env(prefix: str) -> dict[str, str]:
    return cli_env(prefix, BOOTSTRAP, REDIS_URL, BIN=str(Path(sys.executable).parent))


def demo_journeys(prefix: str, folder: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["bash", str(SCRIPT), folder], capture_output=True, text=True, env=env(prefix), timeout=110, check=False
    )
    assert result.returncode == 0, result.stderr
    return result


def published(prefix: str) -> list[tuple[str, int, str]]:
    command = [sys.executable, "-m", "orchestrator", "journeys", "list", "--json"]
    result = subprocess.run(command, capture_output=True, text=True, env=env(prefix), timeout=60, check=True)
    return [(r["id"], r["version"], r["status"]) for r in map(json.loads, result.stdout.splitlines())]


def test_without_journeys_the_demo_removes_those_an_earlier_demo_published(prefix: str) -> None:
    demo_journeys(prefix, "journeys")
    before = published(prefix)
    assert {jid for jid, _, _ in before} == {p.stem for p in SHIPPED}
    subprocess.run(
        [sys.executable, "-m", "orchestrator", "journeys", "retire", "win_back"], env=env(prefix), check=True
    )
    # Customers inside a version the topic does not hold (a worker's own folder): listed, not removable.
    client = redis.Redis.from_url(REDIS_URL)
    client.hset(inside_key(prefix), "0", entry({("from_a_folder", "1", "wait"): 2}, time.time(), "w:1", 4))
    client.close()

    result = demo_journeys(prefix, "")

    assert published(prefix) == [("from_a_folder", 1, "unpublished")]
    assert result.stdout.strip() == f"removed {len(before)} published journey version(s): the rules run alone"
    assert "removed welcome v2" in result.stderr

    demo_journeys(prefix, "journeys")  # the next demo with journeys: all back, the retired one open again
    assert sorted(published(prefix)) == sorted([*before, ("from_a_folder", 1, "unpublished")])
    assert demo_journeys(prefix, "").stdout.startswith(f"removed {len(before)} ")
    assert demo_journeys(prefix, "").stdout.startswith("removed 0 ")  # nothing published: nothing to do
