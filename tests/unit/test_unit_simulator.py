"""The traffic simulator: repeatable, mostly valid, broken on purpose when asked."""

from __future__ import annotations

from orchestrator.simulator import BROKEN, Simulator
from schemas.events import ChannelEvent

T0 = 1_800_000_000.0
STEPS = 1000


def broken_sim() -> Simulator:
    return Simulator(customers=10, seed=34, broken_every=5, run_id="t")


def clean_sim() -> Simulator:
    return Simulator(customers=10, seed=15, run_id="t")


def run(sim: Simulator, steps: int) -> list[list]:
    return [list(sim.records(T0 + step)) for step in range(steps)]


def test_the_same_seed_produces_the_same_records():
    assert run(broken_sim(), STEPS) == run(broken_sim(), STEPS)


def test_a_different_seed_produces_different_records():
    assert run(Simulator(customers=10, seed=34), 20) != run(clean_sim(), 20)


def test_every_fifth_step_yields_raw_broken_bytes_when_asked():
    steps = run(broken_sim(), STEPS)
    for number, records in enumerate(steps, start=1):
        broken = [r for r in records if r.raw is not None]
        if number % 5 == 0:
            assert len(records) == 1
            assert broken == records
            assert records[0].raw in BROKEN
            assert records[0].event is None
        else:
            assert broken == []


def test_without_broken_every_nothing_is_broken():
    assert all(r.raw is None for records in run(clean_sim(), STEPS) for r in records)


def test_every_event_the_simulator_makes_is_a_valid_channel_event():
    records = [r for step in run(broken_sim(), STEPS) for r in step]
    events = [r for r in records if r.event is not None]
    preferences = [r for r in events if r.event is not None and r.event["type"] == "preferences"]
    assert len(events) - len(preferences) == STEPS - STEPS // 5  # one per step, and a sign-up's preferences
    assert preferences and all(r.event["properties"]["quiet_hours"] for r in preferences if r.event)
    types = set()
    for record in events:
        parsed = ChannelEvent.model_validate(record.event)
        assert T0 <= parsed.ts < T0 + STEPS
        assert parsed.customer_id.startswith("sim-t-")
        types.add(parsed.type)
    assert {"search", "product_view", "add_to_cart", "purchase", "preferences"} <= types


def test_two_runs_with_the_same_seed_never_reuse_an_event_id():
    def ids(sim: Simulator) -> set[str]:
        return {r.event["event_id"] for step in run(sim, 50) for r in step if r.event}

    assert not ids(Simulator(seed=7)) & ids(Simulator(seed=7))


def test_event_ids_are_unique():
    ids = [r.event["event_id"] for step in run(clean_sim(), STEPS) for r in step if r.event]
    assert len(ids) == len(set(ids))


def test_the_simulator_runs_a_thousand_steps_and_makes_valid_consent_events():
    records = [r for step in run(Simulator(seed=7, broken_every=5), 1000) for r in step]
    consents = [r.event for r in records if r.event and r.event["type"] == "consent"]
    assert consents
    for event in consents:
        ChannelEvent.model_validate(event)
        assert event["properties"]["channel"] in {"email", "ads"}
        assert isinstance(event["properties"]["granted"], bool)


def test_everyone_s_first_event_is_a_sign_up_and_only_the_first():
    events = [out.event for step in run(clean_sim(), STEPS) for out in step if out.event]
    first: dict[str, str] = {}
    for event in events:
        first.setdefault(event["customer_id"], event["type"])
    assert set(first.values()) == {"signup"}
    assert sum(event["type"] == "signup" for event in events) == len(first) == 10
