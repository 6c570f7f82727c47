"""``make bench``, API part: latency of ``orchestrator serve`` at a fixed request rate (target p99 <= 10 ms).

Starts the real command as a subprocess against the real Redis (``ORCH_REDIS_URL``),
writes 10,000 profiles with the workers' ReadModelWriter, then drives an *open-loop*
load: request ``i`` is due at ``start + i / rate`` whether or not earlier ones have
answered, and its latency is measured from that due time. A closed loop (send the
next request when the last one returns) would slow down with the server and hide
exactly the stalls a p99 is meant to show (coordinated omission).

The mix: 50 % next best action for one channel, 20 % across channels, 20 % profile
by key, 10 % profile by raw e-mail address (hashed, then the alias). Printed, never
asserted. Usage: ``python bench/api.py [rate] [seconds] [profiles]``.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import aiohttp
import redis

from orchestrator.cli.progress import progress_bar
from orchestrator.core.decide import decide
from orchestrator.core.event import Event
from orchestrator.core.state import CustomerState
from orchestrator.readmodel import ReadModelWriter

ROOT = Path(__file__).parents[1]
REDIS_URL = os.environ.get("ORCH_REDIS_URL", "redis://127.0.0.1:6379/0")
TOKEN = "bench-token"
CHANNELS = ("web", "email", "ads", "app", "store", "support")
QUERIES = ("tent", "stove", "headlamp", "daypack", "rain jacket", "trail shoes")
WARMUP_S = 2.0
TARGET_P99_MS = 10.0


def customers(count: int, now: float) -> list[CustomerState]:
    """Profiles of every kind: browsers, carts, buyers, repeat buyers, lapsed ones."""
    states = []
    for i in range(count):
        key = f"c-{i:06d}"
        steps: list[tuple[str, dict]] = [("page_view", {}), ("search", {"query": QUERIES[i % len(QUERIES)]})]
        if i % 3 == 0:
            steps.append(("add_to_cart", {"product": f"sku-{i % 97}", "price": 25.0}))
        steps += [("purchase", {"products": [{"id": f"sku-{i % 89}"}], "value": 59.0})] * (i % 7 // 2)
        start = now - (100 * 86400 if i % 11 == 0 else 3600)
        state = None
        for n, (kind, props) in enumerate(steps):
            ts = start + n * 60
            event = Event(f"{key}-{n}", kind, ts, key, "web", ts, key, {"email": f"user{i}@example.com"}, props)
            state = decide(state, event, ts).state
        assert state is not None
        states.append(state)
    return states


async def write(prefix: str, states: list[CustomerState], now: float) -> None:
    writer = ReadModelWriter(REDIS_URL, prefix)
    for start in range(0, len(states), 1000):  # a flush per thousand, as a busy worker would
        for state in states[start : start + 1000]:
            writer.stage(state, now, 0)
        await writer.flush()
    await writer.aclose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(prefix: str, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    env |= {"ORCH_REDIS_URL": REDIS_URL, "ORCH_TOPIC_PREFIX": prefix, "ORCH_API_TOKENS": TOKEN}
    env |= {"ORCH_LOG_LEVEL": "warning"}
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "serve", "--port", str(port)], env=env, cwd=ROOT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"orchestrator serve exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("orchestrator serve did not start in 30 s")


def paths(count: int, customers_count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    found = []
    for _ in range(count):
        i = rng.randrange(customers_count)
        pick = rng.random()
        if pick < 0.5:
            found.append(f"/v1/customers/c-{i:06d}/next-best-action?channel={rng.choice(CHANNELS)}&limit=3")
        elif pick < 0.7:
            found.append(f"/v1/customers/c-{i:06d}/next-best-action")
        elif pick < 0.9:
            found.append(f"/v1/customers/c-{i:06d}")
        else:
            found.append(f"/v1/customers/email:User{i}@Example.com")
    return found


async def drive(
    base: str, targets: list[str], rate: float, advance: Callable[[], None] | None = None
) -> tuple[list[float], int, float]:
    """Open loop: send each request at its due time; latency from the due time. (ms list, errors, seconds)"""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    jar = aiohttp.DummyCookieJar()
    async with aiohttp.ClientSession(base, connector=connector, headers=headers, cookie_jar=jar) as session:

        async def one(path: str, due: float) -> None:
            nonlocal errors
            try:
                async with session.get(path) as resp:
                    await resp.read()
                    ok = resp.status == 200
            except aiohttp.ClientError:
                ok = False
            latencies.append((loop.time() - due) * 1000)
            errors += not ok
            if advance is not None:
                advance()

        start = loop.time() + 0.05
        tasks = []
        for i, path in enumerate(targets):
            due = start + i / rate
            if (delay := due - loop.time()) > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(path, due)))
        await asyncio.gather(*tasks)
        elapsed = loop.time() - start
    return latencies, errors, elapsed


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))]


def cleanup(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        batch = []
        for key in client.scan_iter(match=f"{prefix}*", count=2000):
            batch.append(key)
            if len(batch) >= 1000:
                client.unlink(*batch)
                batch = []
        if batch:
            client.unlink(*batch)
    finally:
        client.close()


def main() -> None:
    rate = float(sys.argv[1]) if len(sys.argv) > 1 else 1000.0
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 10_000
    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    now = time.time()
    started = time.perf_counter()
    asyncio.run(write(prefix, customers(count, now), now))
    print(f"API: {count:,} profiles written to {REDIS_URL} in {time.perf_counter() - started:.1f}s")
    gc.collect()
    gc.freeze()  # the 10,000 states are garbage now, the rest lives on: keep GC pauses out of the figures
    port = free_port()
    server = start_server(prefix, port)
    try:
        base = f"http://127.0.0.1:{port}"
        _, warmup_errors, _ = asyncio.run(drive(base, paths(int(rate * WARMUP_S), count, seed=1), rate))
        targets = paths(int(rate * seconds), count)
        with progress_bar(f"{rate:,.0f} requests/s", len(targets)) as advance:
            latencies, errors, elapsed = asyncio.run(drive(base, targets, rate, advance))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=10)
        cleanup(prefix)
    p50, p95, p99 = (percentile(latencies, p) for p in (50, 95, 99))
    verdict = "yes" if p99 <= TARGET_P99_MS else "NO"
    print(
        f"API, open loop at {rate:,.0f}/s for {seconds:g}s: achieved {len(latencies) / elapsed:,.0f} requests/s, "
        f"{errors} errors; latency from the scheduled send p50 {p50:.2f} ms, p95 {p95:.2f} ms, "
        f"p99 {p99:.2f} ms, max {max(latencies):.2f} ms; p99 <= {TARGET_P99_MS:g} ms: {verdict}"
    )
    print(
        f"  warm-up before it ({WARMUP_S:g}s at the same rate, not in the figures): {warmup_errors} errors "
        "(a just-started server; before it opened its Redis pool at start, 50-140 of these were 503s)"
    )


if __name__ == "__main__":
    main()
