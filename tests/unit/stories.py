"""A customer whose events and timer wakes go through decide(), as the streaming agents would."""

from __future__ import annotations

from orchestrator.core.commands import Command
from orchestrator.core.decide import WAKE, Decision, decide
from orchestrator.core.event import Event, customer_key
from orchestrator.core.policy import Policy
from orchestrator.core.state import CustomerState
from orchestrator.journeys.engine import Engine

T0 = 1_800_000_000.0  # Friday 2027-01-15, 08:00 UTC
JOURNEYS_ONLY = Policy(rules=frozenset())


def identified_event(
    event_id: str, type: str, at: float, customer_id: str | None = None, props: dict | None = None, **ids: str
) -> Event:
    """A web event at ``T0 + at``, routed as ingestion routes it: by the customer id, else
    by the most stable identifier (for the identity graph's tests)."""
    return Event(
        event_id=event_id,
        type=type,
        ts=T0 + at,
        customer_key=customer_key(customer_id, ids),
        channel="web",
        received_at=T0 + at,
        customer_id=customer_id,
        identifiers=dict(ids),
        properties=dict(props or {}),
    )


class Customer:
    """Times are seconds after T0; the engine runs with the built-in rules off unless told otherwise."""

    def __init__(
        self,
        engine: Engine,
        customer_id: str = "c-1",
        policy: Policy = JOURNEYS_ONLY,
        timezone: str | None = None,
    ) -> None:
        self.engine = engine
        self.customer_id = customer_id
        self.policy = policy
        self.state: CustomerState | None = CustomerState(key=customer_id, timezone=timezone) if timezone else None
        self.count = 0

    def decide(self, event: Event, now: float) -> Decision:
        decision = decide(self.state, event, now, self.policy, self.engine)
        self.state = decision.state
        return decision

    def does(self, type: str, at: float = 0.0, via: str = "web", decided: float | None = None, **props) -> Decision:
        """``type`` dated ``at``; ``decided``: when it reached Kafka and was decided, if later
        (a channel's late record, or one read again after a rebalance)."""
        self.count += 1
        decided = at if decided is None else decided
        event = Event(
            event_id=f"{self.customer_id}-{type}-{self.count}",
            type=type,
            ts=T0 + at,
            customer_key=self.customer_id,
            channel=via,
            received_at=T0 + decided,
            customer_id=self.customer_id,
            properties=props,
        )
        return self.decide(event, T0 + decided)

    def buys(self, *products: str, at: float, value: float = 59.0) -> Decision:
        items = [{"id": p, "price": value, "qty": 1} for p in products]
        return self.does("purchase", at, products=items, value=value, currency="EUR")

    def wakes(self, at: float) -> Decision:
        event = Event("timer", WAKE, T0 + at, self.customer_id, "timer", T0 + at)
        return self.decide(event, T0 + at)

    def timer_until(self, at: float) -> list[Command]:
        """Let the timer service wake the customer whenever asked, up to ``at``; what went out."""
        sent: list[Command] = []
        while self.state is not None and (wake := self.state.next_wake()) is not None and wake <= T0 + at:
            sent += self.wakes(wake - T0).commands
        return sent

    @property
    def next_wake(self) -> float | None:
        wake = self.state.next_wake() if self.state is not None else None
        return None if wake is None else wake - T0


class Due(dict[bytes, bytes]):
    """The decide agent's timer index, in memory."""

    def fired(self, due_at: float) -> None:
        """Lateness metric of the real index: nothing to measure here."""
