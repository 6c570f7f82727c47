"""A history file for replay, read in parallel.

Parsing a line costs a fair share of replaying its event (about 15 us against
60 to 100), so one process that parsed every line before sharing the customers
out would cap any replay near 65,000 events/s, however many cores it had
(measured by ``make bench``). Instead the file is held as raw lines and read
twice, both times in parallel: first a *scan*, each process validating a
contiguous range of lines and noting only what planning needs (each event's
time and profile keys, sent column by column); then, once the identity groups
are shared out, each replay process parses just the lines it replays. Parsing
twice costs less than sending parsed events between processes (pickling an
event costs more than parsing its line), and every error is found in the scan,
before any command is printed. What stays serial (sorting by time, planning,
merging the output) costs the parent 2 to 4 us per event.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, BinaryIO

from pydantic import ValidationError

from orchestrator.core.commands import Command
from orchestrator.core.event import Event
from orchestrator.forked import fork_each, reap
from orchestrator.ingest import (
    Limits,
    bounds_problem,
    content_problem,
    depth_of,
    describe,
    size_problem,
    to_event,
)
from orchestrator.replay import Replay, Summary
from orchestrator.replay_split import keys_of, plan_keys, replay_shared
from schemas.codec import JSON, DecodeError, check_json_integers, decode_payload
from schemas.events import ChannelEvent

PROGRESS_EVERY = 5_000  # lines a scanning process reads between progress reports
Parse = Callable[[bytes], Event]
DEFAULT_LIMITS = Limits()


class LineError(ValueError):
    """A line that is not a valid event; ``number`` counts from 1, as editors do."""

    def __init__(self, number: int, reason: str) -> None:
        super().__init__(f"line {number}: {reason}")
        self.number, self.reason = number, reason

    def __reduce__(self) -> tuple[type[LineError], tuple[int, str]]:
        return LineError, (self.number, self.reason)  # sent from the process that found it


@dataclass(frozen=True)
class Scan:
    """What planning needs, in time order (ties in file order): each event's line and keys."""

    line_index: list[int]  # by rank: the event's index into the file's lines
    routed: list[str]  # the key each event is routed by
    linked: dict[int, list[str]]  # rank -> the other keys it names (keys_of), for the few with any
    last_ts: float


def read_lines(path: Path | BinaryIO) -> list[bytes]:
    """Every line of the file (or of a stream, such as standard input), blank ones too, so
    that indexes give line numbers (a UTF-8 byte-order mark, which some editors write, is
    not part of the first line)."""
    data = path.read_bytes() if isinstance(path, Path) else path.read()
    return data.removeprefix(b"\xef\xbb\xbf").split(b"\n")


def event_parser(channel: str, limits: Limits = DEFAULT_LIMITS) -> Parse:
    """The line -> Event function of ``orchestrator replay``: the stream's JSON decoding (no
    integer beyond 64 bits), the contract and the stream's bounds (size, nesting, a time in
    seconds), then ingestion."""

    def parse(line: bytes) -> Event:
        if problem := size_problem(line, limits):
            raise ValueError(problem)
        check_json_integers(line)
        doc = _validated(line, limits)
        if problem := bounds_problem(line, doc, limits):
            raise ValueError(problem)
        return to_event(doc, channel, received_at=doc.ts)

    return parse


def _validated(line: bytes, limits: Limits) -> ChannelEvent:
    """The line as the contract's event. A line pydantic refuses is read as the stream reads it
    too, so a lone surrogate ("\\ud800", which pydantic's reader calls "unexpected end of hex
    escape") or a NaN is named as the stream names it, before what the contract says."""
    try:
        return ChannelEvent.model_validate_json(line)
    except ValidationError as exc:
        try:
            doc = decode_payload(line, JSON)
        except DecodeError:
            raise exc from None
        if (
            isinstance(doc, dict)
            and depth_of(doc, limits.max_depth) <= limits.max_depth
            and (problem := content_problem(doc))
        ):
            raise ValueError(problem) from None
        raise


def parse_all(lines: Sequence[bytes], parse: Parse) -> list[Event]:
    """Every event of the file in this process, for histories too small to share out."""
    return [_parsed(parse, lines[i], i) for i in range(len(lines)) if lines[i].strip()]


def scan(lines: Sequence[bytes], parse: Parse, processes: int, progress: Callable[[int], None] | None = None) -> Scan:
    """Validate every line in ``processes`` forked processes; raise the first bad line's LineError."""
    bounds = [len(lines) * i // processes for i in range(processes + 1)]
    ranges = [(lines, lo, hi, parse) for lo, hi in itertools.pairwise(bounds)]
    children, receivers = fork_each(_scan_range, ranges)  # they read the parent's lines, uncopied
    try:
        found = [_scanned(receiver, progress) for receiver in receivers]
    finally:
        reap(children)
    errors = [chunk.error for chunk in found if chunk.error is not None]
    if errors:
        raise min(errors, key=lambda error: error.number)
    return _ordered(found)


@dataclass
class _Chunk:
    """What one process found in its range, column by column: cheap to send whole."""

    ts: list[float] = field(default_factory=list)
    index: list[int] = field(default_factory=list)  # the line each event came from
    routed: list[str] = field(default_factory=list)  # the key each event is routed by
    linked: dict[int, list[str]] = field(default_factory=dict)  # line -> the other keys, for the few with any
    error: LineError | None = None


def _scanned(receiver: Connection, progress: Callable[[int], None] | None) -> _Chunk:
    with receiver:
        while True:
            try:
                kind, payload = receiver.recv()
            except EOFError:
                raise RuntimeError("a reading process stopped before it finished") from None
            if kind == "progress":
                if progress is not None:
                    progress(payload)
                continue
            if kind == "failed":
                raise RuntimeError(f"a reading process failed: {payload}")
            return payload


def _scan_range(lines: Sequence[bytes], lo: int, hi: int, parse: Parse, sender: Connection) -> None:
    """Scan lines ``lo`` to ``hi``: time and keys of each event, or the first bad line."""
    chunk = _Chunk()
    try:
        for index in range(lo, hi):
            if lines[index].strip():
                event = _parsed(parse, lines[index], index)
                keys = keys_of(event)
                chunk.ts.append(event.ts)
                chunk.index.append(index)
                chunk.routed.append(keys[0])
                if len(keys) > 1:
                    chunk.linked[index] = keys[1:]
            if (index - lo + 1) % PROGRESS_EVERY == 0:
                sender.send(("progress", PROGRESS_EVERY))
        sender.send(("progress", (hi - lo) % PROGRESS_EVERY))
    except LineError as exc:
        chunk = _Chunk(error=exc)
    except BaseException as exc:  # the parent must hear why, not just see a closed pipe
        sender.send(("failed", f"{type(exc).__name__}: {exc}"))
        raise SystemExit(1) from None
    sender.send(("scanned", chunk))
    sender.close()


def _parsed(parse: Parse, line: bytes, index: int) -> Event:
    try:
        return parse(line)
    except ValidationError as exc:
        raise LineError(index + 1, describe(exc)) from None
    except ValueError as exc:  # no customer id and no identifier, say
        raise LineError(index + 1, str(exc)) from None


def _ordered(chunks: list[_Chunk]) -> Scan:
    """The chunks, which are in file order, put in time order; a stable sort keeps file order for ties."""
    ts = [t for chunk in chunks for t in chunk.ts]
    index = [i for chunk in chunks for i in chunk.index]
    routed = [key for chunk in chunks for key in chunk.routed]
    linked = {line: keys for chunk in chunks for line, keys in chunk.linked.items()}
    order = sorted(range(len(ts)), key=ts.__getitem__)
    return Scan(
        line_index=[index[i] for i in order],
        routed=[routed[i] for i in order],
        linked={rank: linked[index[i]] for rank, i in enumerate(order) if index[i] in linked},
        last_ts=ts[order[-1]] if order else 0.0,
    )


def replay_scanned(
    lines: Sequence[bytes],
    parse: Parse,
    scanned: Scan,
    make_player: Callable[[], Replay],
    processes: int,
    until: float,
    *,
    render: Callable[[Command], Any],
    progress: Callable[[int], None] | None = None,
) -> tuple[Iterator[Any], Summary]:
    """Share the scanned history's identity groups out; each process parses the lines it replays."""
    shares = plan_keys(scanned.routed, scanned.linked, processes).shares
    order = scanned.line_index
    return replay_shared(
        lambda rank: parse(lines[order[rank]]), shares, make_player, until, render=render, progress=progress
    )
