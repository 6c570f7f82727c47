"""Workaround: Faust commits past a record at the head of a partition that was never processed.

Faust's ``Consumer._new_offset`` picks the offset to commit: one past the first run of
consecutive acknowledged offsets. It declines when that run does not begin at the committed
offset, but its check is off by one (``_committed_offset`` holds what Kafka keeps, the next
record to read, and ``min(acked) - committed == 1`` passes), and with nothing committed yet it
checks nothing. And a stream drops, without acknowledging it, a message that reaches it while
flow control is suspended or from an older generation (``Stream._py_aiter``, around a
rebalance). Once the record after it was acknowledged, Faust committed past the dropped one and
it was lost for good: the broker test of a worker joining mid-traffic lost one record in about
one run in ten, each time the record at the partition's committed offset.

So here a commit covers only offsets from the partition's *head* on: the committed offset, or
with none, the first record delivered since the partition was sought to its committed offset
(:func:`delivered` and :func:`sought`, which the fetch guard calls). Offsets that hold no
records (gaps) count as done. A head that records after it overtook was dropped: an agent
handles a partition's records in order. Nothing would deliver it again, so :func:`overtaken`
names it and the fetch guard reads the partition again from there; the records after it are
read twice, and the customer's state ignores the events it has seen (``ORCH_DEDUPE_WINDOW``).
The agents find such a drop sooner, as soon as the record after it reaches them, and wait for
it (:mod:`agents.stream_drops`); this re-read is what is left when they could not.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from faust.transport.consumer import Consumer

T = TypeVar("T")

GRACE_S = 2.0  # how long a head stays overtaken before it is read again (it never should)
CHECK_EVERY_S = 1.0  # how often the acknowledged offsets are looked through for one
_SUSPECTS = "_orchestrator_overtaken"  # per partition: (head, since when) of an overtaken head
_CHECKED = "_orchestrator_overtaken_checked"  # when they were last looked through
_FIRST = "_orchestrator_first_delivered"  # per partition: the first record since the seek to committed


def install() -> None:
    """Patch Faust's consumer once per process."""
    if getattr(Consumer, "_orchestrator_head_commit", False):
        return
    Consumer._new_offset = _new_offset  # type: ignore[method-assign]
    Consumer._orchestrator_head_commit = True  # type: ignore[attr-defined]


def committable(acked: Iterable[int], gaps: Iterable[tuple[int, int]], head: int | None) -> int | None:
    """One past the run of offsets from ``head`` on that are acknowledged or in a gap (a
    ``[begin, end)`` range with no records); None while ``head`` itself is neither."""
    if head is None:
        return None
    done, spans = set(acked), sorted(gaps)
    position, moved = head, True
    while moved:
        moved = False
        while position in done:
            position, moved = position + 1, True
        for begin, end in spans:
            if begin <= position < end:
                position, moved = end, True
    return position if position > head else None


def head_of(consumer: Any, tp: Any) -> int | None:
    """Where the partition's next commit must begin."""
    committed = consumer._committed_offset[tp]
    return int(committed) if committed is not None else _first(consumer).get(tp)


def sought(consumer: Any, partitions: Iterable[Any]) -> None:
    """The partitions were sought to their committed offsets: what they deliver first is new."""
    first = _first(consumer)
    for tp in partitions:
        first.pop(tp, None)


def delivered(consumer: Any, tp: Any, offset: int) -> None:
    """A record goes to the agents: the partition's head, if it is the first since the seek."""
    _first(consumer).setdefault(tp, offset)


def _first(consumer: Any) -> dict[Any, int]:
    return kept_on(consumer, _FIRST)


def kept_on(consumer: Any, name: str) -> dict[Any, Any]:
    """A map per partition that these workarounds keep on Faust's consumer, made on first use."""
    return made_on(consumer, name, dict)


def made_on(consumer: Any, name: str, make: Callable[[], T]) -> T:
    """What these workarounds keep on Faust's consumer under ``name``, made by ``make`` on first
    use (the consumer is created after the patches are installed)."""
    kept = getattr(consumer, name, None)
    if kept is None:
        kept = make()
        setattr(consumer, name, kept)
    return kept


def _new_offset(self: Any, tp: Any) -> int | None:
    """Faust's pick of the offset to commit, from the partition's head only; it takes the
    offsets it covers off the acknowledged list and the gaps, as Faust's does."""
    acked = self._acked[tp]
    if not acked:
        return None
    gaps = self._gap[tp]
    end = committable(acked, ((gap.begin, gap.end) for gap in gaps), head_of(self, tp))
    if end is None:
        return None
    taken = [offset for offset in acked if offset < end]
    acked[:] = [offset for offset in acked if offset >= end]
    self._acked_index[tp].difference_update(taken)
    if gaps:
        gaps.chop(0, end)
    return end


def overtaken(consumer: Any, now: float | None = None) -> list[tuple[Any, int]]:
    """Partitions whose head was overtaken :data:`GRACE_S` ago and still is, with the head;
    looked for at most every :data:`CHECK_EVERY_S`."""
    now = time.monotonic() if now is None else now
    if now - getattr(consumer, _CHECKED, 0.0) < CHECK_EVERY_S:
        return []
    setattr(consumer, _CHECKED, now)
    before: dict[Any, tuple[int, float]] = getattr(consumer, _SUSPECTS, {})
    suspects: dict[Any, tuple[int, float]] = {}
    for tp, acked in list(consumer._acked.items()):
        head = head_of(consumer, tp)
        gaps = ((gap.begin, gap.end) for gap in consumer._gap[tp])
        if head is not None and any(offset > head for offset in acked) and committable(acked, gaps, head) is None:
            seen = before.get(tp)
            suspects[tp] = seen if seen is not None and seen[0] == head else (head, now)
    setattr(consumer, _SUSPECTS, suspects)
    due = [(tp, head) for tp, (head, since) in suspects.items() if now - since >= GRACE_S]
    for tp, _ in due:
        del suspects[tp]
    return due
