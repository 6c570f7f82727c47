"""The pause between failed Redis flushes: doubling, bounded, reset by a success."""

from __future__ import annotations

from orchestrator.batching import MOST_S, Backoff


def test_pauses_double_up_to_the_most_and_start_over_after_a_success() -> None:
    backoff = Backoff(first_s=0.5)
    assert [backoff.next_pause() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, MOST_S, MOST_S]
    backoff.succeeded()
    assert backoff.next_pause() == 0.5
