"""The flush loop shared by the batched Redis writers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

MOST_S = 5.0  # the longest pause between tries while Redis is down


async def flush_forever(
    flush: Callable[[], Awaitable[None]], full: asyncio.Event, interval_s: float, close: Callable[[], Awaitable[None]]
) -> None:
    """Flush every ``interval_s``, or at once when ``full`` is set; on cancellation flush
    once more, so a clean stop loses nothing, then close.

    ``asyncio.timeout``, not ``wait_for``: on Python 3.11 a cancellation that arrives as
    ``full`` is set is swallowed by ``wait_for``, and the loop then ran on, never stopping."""
    try:
        while True:
            with contextlib.suppress(TimeoutError):  # a quiet interval still flushes
                async with asyncio.timeout(interval_s):
                    await full.wait()
            full.clear()
            await flush()
    finally:
        await asyncio.shield(flush())
        await close()


@dataclass
class Backoff:
    """Pauses between failed flushes: ``first_s``, doubling up to :data:`MOST_S`.

    While Redis is down a writer neither hammers it nor floods the log with a warning
    every flush interval; once Redis is back, what waited is written within ``MOST_S``."""

    first_s: float
    _next_s: float = 0.0

    async def failed(self) -> None:
        await asyncio.sleep(self.next_pause())

    def next_pause(self) -> float:
        pause = self._next_s or self.first_s
        self._next_s = min(MOST_S, pause * 2)
        return pause

    def succeeded(self) -> None:
        self._next_s = 0.0
