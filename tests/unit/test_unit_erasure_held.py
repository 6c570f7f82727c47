"""An erasure forgets the profile last: killed before, the worker erases it again in full."""

from __future__ import annotations

from stories import JOURNEYS_ONLY, T0, Due, identified_event

from agents.decide import decide_step
from agents.erasure import HeldWrites
from orchestrator.identity import records
from orchestrator.identity.graph import ERASE, ERASE_KEY, Context

CTX = Context(JOURNEYS_ONLY, None)


def test_held_writes_are_read_back_and_reach_the_table_only_at_commit() -> None:
    table = {b"a": b"1", b"b": b"2"}
    held = HeldWrites(table)
    held[b"a"] = b"3"
    del held[b"b"]
    del held[b"never"]

    assert (held.get(b"a"), held.get(b"b"), held.get(b"c", b"x")) == (b"3", None, b"x")
    assert table == {b"a": b"1", b"b": b"2"}
    held.commit()
    assert table == {b"a": b"3"}


def profile_with_a_pointer() -> dict[bytes, bytes]:
    """c-1 logged in with an email: the profile, and the email's key pointing at it."""
    table: dict[bytes, bytes] = {}
    queue = [identified_event("i-1", "identify", 0, "c-1", email="a@x")]
    for place, event in enumerate(queue):
        step = decide_step(table, Due(), event.customer_key.encode(), event, event.ts, CTX, f"0@{place}")
        queue.extend(step.effects.sends)
    return table


def test_an_erasure_killed_before_its_commit_is_carried_out_in_full_when_read_again() -> None:
    table = profile_with_a_pointer()
    erase = identified_event("x-1", ERASE, 10, "c-1")
    held = HeldWrites(table)
    first = decide_step(held, Due(), b"c-1", erase, T0 + 10, CTX, "0@9")
    assert isinstance(records.decode(held.get(b"c-1")), records.Missing)
    # killed here: the pointer erasures and the audit record died in the producer, uncommitted
    assert isinstance(records.decode(table[b"c-1"]), records.Profile)  # the table never forgot it

    again = decide_step(table, Due(), b"c-1", erase, T0 + 11, CTX, "0@9")

    assert again.effects.audit is not None and again.effects.audit["found"] is True
    assert [e.type for e in again.effects.sends] == [e.type for e in first.effects.sends] == [ERASE_KEY]
    assert again.effects.forget == ["c-1"]
