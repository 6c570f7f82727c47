"""How many customers are inside each journey version now, for ``journeys list`` and
``journeys remove``: the figures the workers write to Redis (:mod:`orchestrator.journeys.inside`).

They are supplementary: when Redis cannot be read, or no worker has written them yet, the
commands still do their work, say why the figures are missing on standard error, and show
none (``null`` in JSON) rather than a zero that would read as "nobody is inside".
"""

from __future__ import annotations

import typer

from orchestrator.cli.options import settings
from orchestrator.errors import redis_failure
from orchestrator.journeys.inside import STALE_S, Inside, inside_key, read

TIMEOUT_S = 3.0


def inside_now(redis_url: str | None, prefix: str | None) -> Inside | None:
    """The group's figures, or None (said why on standard error)."""
    import redis  # here: only the commands that read Redis pay for importing it

    conf = settings(redis_url=redis_url, topic_prefix=prefix)
    client = redis.Redis.from_url(conf.redis_url, socket_connect_timeout=TIMEOUT_S, socket_timeout=TIMEOUT_S)
    try:
        fields = client.hgetall(inside_key(conf.topic_prefix))
    except (redis.RedisError, OSError) as exc:
        typer.echo(f"note: customers inside not shown: {redis_failure(conf.redis_url, exc)}", err=True)
        return None
    finally:
        client.close()
    inside = read(fields)
    if not inside.counted:
        typer.echo("note: customers inside not shown: no worker has counted them yet", err=True)
        return None
    return inside


def coverage(inside: Inside, now: float) -> str:
    """What the figures cover: how old, how many partitions, and which ones they leave out."""
    line = (
        f"customers inside: as the workers counted them, up to {counted_ago(inside, now)} ago, "
        f"on {len(inside.counted)} of {inside.partitions} partition(s)"
    )
    if missing := inside.missing():
        line += f"; partition(s) {_listed(missing)} not counted yet, so their customers are left out"
    if stale := inside.stale(now):
        line += (
            f"; the figures of partition(s) {_listed(stale)} are older than {age(STALE_S)} "
            "(a worker stopped, or the one that took over is still counting)"
        )
    return line


def steps_line(inside: Inside, journey: str, version: int) -> str | None:
    """``12 customers inside now: wait_1h 10, wait_24h 2``; None when nobody is."""
    steps = inside.steps.get((journey, version))
    total = inside.customers(journey, version)
    if not steps or not total:
        return None
    where = ", ".join(f"{step} {n:,}" for step, n in sorted(steps.items(), key=lambda sn: (-sn[1], sn[0])) if n)
    return f"{total:,} customer{'s' if total != 1 else ''} inside now: {where}"


def age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.0f} h"


def counted_ago(inside: Inside, now: float) -> str:
    """How long ago the oldest partition's figures were true."""
    return age(now - (inside.oldest() or now))


def _listed(partitions: list[int]) -> str:
    return ", ".join(map(str, partitions))
