"""The flush loop shared by the batched Redis writers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger(__name__)
MOST_S = 5.0  # the longest pause between tries while Redis is down


class FlushFailed(Exception):
    """A flush that did not write everything it took (Redis down); what it took is staged again.

    The message is the log line. Only the flush loop warns of it (:func:`flush_forever`), once
    per try, its tries spaced by :class:`Backoff`: the offset commits and erasures that flush
    through :meth:`Flushes.written` try about once a second each, and a warning per try of
    theirs flooded the log for as long as Redis was down."""


async def flush_forever(
    flushes: Flushes,
    full: asyncio.Event,
    interval_s: float,
    close: Callable[[], Awaitable[None]],
    backoff: Backoff | None = None,
) -> None:
    """Flush every ``interval_s``, or at once when ``full`` is set, warning of each flush that
    fails and pausing after it (``backoff``: ten intervals, at most 1 s, at first); on
    cancellation flush once more, so a clean stop loses nothing, then close. The last flush
    waits for one in flight (one at a time, each shielded: :meth:`Flushes.flush`).

    ``asyncio.timeout``, not ``wait_for``: on Python 3.11 a cancellation that arrives as
    ``full`` is set is swallowed by ``wait_for``, and the loop then ran on, never stopping."""
    backoff = backoff or Backoff(min(1.0, interval_s * 10))
    try:
        while True:
            with contextlib.suppress(TimeoutError):  # a quiet interval still flushes
                async with asyncio.timeout(interval_s):
                    await full.wait()
            full.clear()
            try:
                await flushes.flush()
            except FlushFailed as exc:  # a stop cuts the pause short: the last flush does not wait for it
                pause = backoff.next_pause()
                log.warning("%s; trying again in %.1f s", exc, pause)
                await asyncio.sleep(pause)
            else:
                backoff.succeeded()
    finally:
        try:
            await flushes.flush()
        except FlushFailed as exc:
            log.warning("%s; the writer stops without it", exc)
        finally:
            await close()


@dataclass
class Backoff:
    """Pauses between failed flushes: ``first_s``, doubling up to :data:`MOST_S`.

    While Redis is down a writer neither hammers it nor floods the log with a warning
    every flush interval; once Redis is back, what waited is written within ``MOST_S``."""

    first_s: float
    _next_s: float = 0.0

    def next_pause(self) -> float:
        pause = self._next_s or self.first_s
        self._next_s = min(MOST_S, pause * 2)
        return pause

    def succeeded(self) -> None:
        self._next_s = 0.0


@dataclass
class Flushes:
    """One flush at a time, and how far they got; the pause after a failed flush and the
    warning are the flush loop's (:func:`flush_forever`), so a caller of :meth:`written` paces
    its own tries and says what it must of them.

    A writer numbers the changes it stages (:meth:`staged`); a flush that succeeds has written
    every change staged before it began. So :meth:`written` can tell its caller that the
    changes staged before the call are in Redis, even while later ones, staged as it waited,
    are still on their way: an erasure waits for its deletes, an offset commit for the profiles
    of the records it covers (``agents.commit_hold``)."""

    flush_once: Callable[[], Awaitable[None]]  # raises FlushFailed when it did not write all it took
    _staged: int = 0
    _written: int = 0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def staged(self) -> None:
        self._staged += 1

    async def flush(self) -> None:
        """Write everything staged before it began, or raise :class:`FlushFailed`.

        Shielded from its caller's cancellation (a worker stopping, a commit that waited long
        enough): a flush has taken its batch off the staged changes when it sends it, so one cut
        short dropped the batch, and a later flush then counted the lost changes as written. And
        on Python 3.11, ``asyncio.wait_for``, which redis-py sends each command through when a
        socket timeout is set, drops a cancellation that arrives as the command completes (CPython
        gh-86296, fixed in 3.12): the flush loop then never stopped. Cancellations now stop at
        the shield, never reaching redis-py."""
        await asyncio.shield(self._flush())

    async def _flush(self) -> None:
        async with self._lock:
            upto = self._staged
            await self.flush_once()
            self._written = max(self._written, upto)

    async def written(self) -> bool:
        """Flush; True when every change staged before this call is in Redis. A failed flush
        is logged at debug level only: the flush loop warns of the outage (:class:`FlushFailed`)."""
        wanted = self._staged
        try:
            await self.flush()
        except FlushFailed as exc:
            log.debug("%s; written() says no", exc)
        return self._written >= wanted


Written = Callable[[], Awaitable[bool]]  # True once Redis has everything staged before the call


class Writer(Protocol):
    async def written(self) -> bool: ...


def all_written(*writers: Writer) -> Written:
    """One check for several writers: each one flushes, and all must say they are written."""

    async def written() -> bool:
        results = [await writer.written() for writer in writers]
        return all(results)

    return written
