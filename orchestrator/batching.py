"""The flush loop shared by the batched Redis writers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable


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
