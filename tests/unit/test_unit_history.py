"""A history file read in parallel replays exactly as one read in one process.

The histories of the replay-equivalence tests (merges, shared e-mails, erasures,
redeliveries, late events), written as the JSON lines ``orchestrator replay`` reads:
scanned by several processes and parsed by the ones that replay them, they must give
the commands, in order, and the summary that parsing everything first gives. Bad
lines are reported by number, the first in the file, whichever process found it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from test_unit_replay_equivalence import DAY, POLICIES, engine, history, probe

from orchestrator.core.event import Event
from orchestrator.history import LineError, event_parser, parse_all, read_lines, replay_scanned, scan
from orchestrator.replay import Replay
from orchestrator.replay_split import replay_split

PARSE = event_parser("replay")


def as_lines(events: list[Event]) -> list[bytes]:
    """The events as a channel team would write them, unsorted, with a blank line or two."""
    docs = [
        {
            "event_id": e.event_id,
            "type": e.type,
            "ts": e.ts,
            "customer_id": e.customer_id,
            "identifiers": e.identifiers or None,
            "channel": e.channel,
            "properties": e.properties,
            "action_id": e.action_id,
        }
        for e in events
    ]
    lines = [json.dumps(doc).encode() for doc in reversed(docs)]
    return [*lines[:10], b"", *lines[10:], b"  ", b""]


def replayed(lines: list[bytes], processes: int, policy: str) -> tuple[list[Any], dict[str, Any]]:
    ticks: list[int] = []

    def player() -> Replay:
        return Replay(POLICIES[policy], engine(probe()))

    if processes == 1:
        events = parse_all(lines, PARSE)
        until = max(e.ts for e in events) + 100 * DAY
        commands, summary = replay_split(events, player, 1, until=until, render=lambda c: c.to_wire())
    else:
        scanned = scan(lines, PARSE, processes, ticks.append)
        assert sum(ticks) == len(lines)
        until = scanned.last_ts + 100 * DAY
        commands, summary = replay_scanned(
            lines, PARSE, scanned, player, processes, until, render=lambda c: c.to_wire()
        )
    return list(commands), summary.as_dict()


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("policy", list(POLICIES), ids=list(POLICIES))
def test_scanned_in_parallel_replays_as_parsed_in_one_process(seed: int, policy: str) -> None:
    lines = as_lines(history(900, seed))
    single = replayed(lines, 1, policy)
    assert single[0], "the history should produce commands"
    for processes in (2, 4):
        assert replayed(lines, processes, policy) == single


def test_the_first_bad_line_is_reported_whichever_process_reads_it() -> None:
    lines = as_lines(history(300, 3))
    lines[200] = b'{"event_id": "x", "type": "Bad Type", "ts": 1, "customer_id": "c"}'
    lines[250] = b"not json"
    with pytest.raises(LineError) as found:
        scan(lines, PARSE, 4)
    assert found.value.number == 201
    assert "type" in found.value.reason


def test_a_line_without_anyone_to_decide_for_names_its_number() -> None:
    lines = as_lines(history(50, 4))
    lines[30] = b'{"event_id": "x", "type": "search", "ts": 1}'
    with pytest.raises(LineError, match=r"line 31: .*customer_id or at least one identifier"):
        scan(lines, PARSE, 3)
    with pytest.raises(LineError, match="line 31: "):
        parse_all(lines, PARSE)


def test_a_history_of_one_event_replays_over_many_processes() -> None:
    lines = as_lines(history(300, 5))[:1]
    scanned = scan(lines, PARSE, 4)
    commands, summary = replay_scanned(
        lines, PARSE, scanned, lambda: Replay(POLICIES["journeys only"], engine()), 4, scanned.last_ts + DAY, render=str
    )
    assert sum(1 for _ in commands) >= 0
    assert summary.events == 1


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b'{"event_id": "x", "type": "search", "ts": 1790000000000, "customer_id": "c"}', "not milliseconds"),
        (b'{"event_id": "x", "type": "search", "ts": 631152000, "customer_id": "c"}', "before 2000"),
        (
            b'{"event_id": "x", "type": "search", "ts": 1790000000, "customer_id": "c", "properties": {"q": "%s"}}'
            % (b"x" * 70_000),
            "bytes > limit",
        ),
        (b'{"a": "%s"}' % (b"x" * 70_000), "70009 bytes > limit 65536"),  # too large first, as the stream says
        (
            b'{"event_id": "x", "type": "search", "ts": 1790000000, "customer_id": "c", "properties": {"a": %s}}'
            % (b"[" * 8 + b"]" * 8),
            "nested deeper than 8 levels",
        ),
        (
            b'{"event_id": "x", "type": "search", "ts": 1790000000, "customer_id": "c", '
            b'"properties": {"q": "\\ud800"}}',
            "properties.q: invalid unicode: lone surrogate",  # not pydantic's "unexpected end of hex escape"
        ),
        (
            b'{"event_id": "x", "type": "search", "ts": 1790000000, "customer_id": "c", "properties": {"v": NaN}}',
            "properties.v: NaN is not a finite number",
        ),
        (
            b'{"event_id": "x", "type": "search", "ts": 1790000000, "customer_id": "c", "properties": {"v": %d}}'
            % 2**70,
            "not valid JSON: integer 11805916207174113034... out of 64-bit range",
        ),
        (
            b'{"event_id": "x", "type": "search", "ts": 1790000000, "customer_id": "c", "properties": {"v": %d}}'
            % -(2**63 + 1),
            "not valid JSON: integer -9223372036854775809 out of 64-bit range",
        ),
    ],
    ids=[
        "milliseconds",
        "1990",
        "too large",
        "too large and not an event",
        "too deep",
        "lone surrogate",
        "NaN",
        "above 64 bits",
        "below 64 bits",
    ],
)
def test_a_line_the_stream_would_refuse_is_refused_by_replay_too(line: bytes, reason: str) -> None:
    lines = as_lines(history(50, 4))
    lines[7] = line
    with pytest.raises(LineError, match=f"line 8: .*{reason}"):
        scan(lines, PARSE, 2)


@pytest.mark.parametrize("value", [2**64 - 1, -(2**63), 10**18])
def test_an_integer_within_64_bits_is_replayed(value: int) -> None:
    line = b'{"event_id": "x", "type": "search", "ts": 1790000000, "customer_id": "c", "properties": {"v": %d}}' % value
    assert PARSE(line).properties == {"v": value}


def test_a_byte_order_mark_before_the_first_line_is_not_an_error(tmp_path) -> None:
    path = tmp_path / "history.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b"\n".join(as_lines(history(20, 6))))
    lines = read_lines(path)
    assert len(parse_all(lines, PARSE)) == sum(1 for line in lines if line.strip())
