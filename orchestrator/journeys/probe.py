"""Try a journey's conditions and templates on sample customers before it is published.

CEL is typed, but the Rust implementation checks types only when it evaluates, so
``audience: state.events`` (a number), ``state.events + 'a' == 1`` or ``matches('[')``
compile fine and then fail for every customer, each failure counted as false. ``journeys
validate`` evaluates each expression on two customers folded from sample events (one new,
one with a purchase, a cart and consent; ids that read as numbers in one of them), through
the engine's own views (:mod:`context`), so the types are exactly those a worker hands to CEL.
The events carry no properties: a property is free-form, so any use of one stops the probe
with a missing key, which is data, never a mistake in the journey.

What is refused: a condition that gives a value other than true or false for a sample
customer, and an expression that fails with a type or function error (no such overload, a
bad regex, a value a command cannot carry) for every sample customer. Missing keys, indexes
out of range, overflows and divisions by zero depend on the data, and pass.
"""

from __future__ import annotations

import re
from typing import Any

from orchestrator.core.event import Event
from orchestrator.core.fold import fold
from orchestrator.core.state import CustomerState
from orchestrator.journeys.conditions import (
    Condition,
    Template,
    Variables,
    cel_type,
    comprehension_depth,
    render_payload,
)
from orchestrator.journeys.context import Context, summary

T0 = 1_790_000_000.0  # 2026-09-21: any date will do
RECENT = 20
# (customer id, event id prefix, product ids): the second reads as numbers, as some shops' ids do,
# so that int(state.customer_id) is not taken for a mistake.
CUSTOMERS = (("c-new", "e-", ()), ("1001", "2002", ("3003", "3004")))
UNDEFINED = re.compile(r"Undefined variable or function: ('.+')")
DATA_ERRORS = (LookupError, ArithmeticError)  # a missing key or index, an overflow: the data's, not the journey's


def condition_problem(condition: Condition, event_type: str | None, trigger_type: str) -> str | None:
    """Why ``condition`` can never work as one, or None. ``event_type`` is the type of the event
    it is judged on (None: a step with no event in hand, where ``event`` is the trigger)."""
    outcomes = _outcomes(condition.expression, lambda view: condition.value(view), event_type, trigger_type)
    values = [o for o in outcomes if not isinstance(o, BaseException)]
    wrong = next((v for v in values if type(v) is not bool), _NONE)
    if wrong is not _NONE:
        return f"a condition must be true or false, this gives {cel_type(wrong)} for a sample customer"
    return _always_failed(outcomes)


def template_problem(template: Template, trigger_type: str) -> str | None:
    """Why a payload template fails for every sample customer, or None; judged as an action
    step after a wait sees it (no event in hand, the trigger as ``event``)."""
    expression = " ".join(part.expression for part in template.parts)
    outcomes = _outcomes(expression, lambda view: render_payload(template, view), None, trigger_type)
    return _always_failed(outcomes)


_NONE = object()


def _always_failed(outcomes: list[Any]) -> str | None:
    """The first error's first line when every outcome is an error that is not the data's."""
    errors = [o for o in outcomes if isinstance(o, Exception) and not isinstance(o, DATA_ERRORS)]
    if not outcomes or len(errors) < len(outcomes):
        return None
    return f"fails for every sample customer: {_plainly(errors[0])}"


def _plainly(error: Exception) -> str:
    """CEL's message without its general advice: its first sentence. A function CEL calls
    undefined here exists (names are checked first), just not for these argument types."""
    first = str(error).strip().splitlines()[0].split(". ")[0].rstrip(".: ")
    if undefined := UNDEFINED.fullmatch(first):
        return f"no function {undefined[1]} takes arguments of these types"
    return first


def _outcomes(expression: str, run: Any, event_type: str | None, trigger_type: str) -> list[Any]:
    """What ``run`` gives (or raises) on each sample; nothing for nested comprehensions,
    which over a long literal list could take seconds."""
    if comprehension_depth(expression) > 1:
        return []
    found: list[Any] = []
    for view in sample_views(event_type, trigger_type):
        try:
            found.append(run(view))
        except Exception as exc:
            found.append(exc)
    return found


def sample_views(event_type: str | None, trigger_type: str) -> list[Variables]:
    """What an expression sees for each sample customer: a trigger of ``trigger_type``, then
    an event of ``event_type`` (None: none in hand, as when a wait's time is up)."""
    views: list[Variables] = []
    for customer, ids, products in CUSTOMERS:
        state = CustomerState(key=customer)
        history = [*_history(customer, ids, products), _event(customer, f"{ids}9", trigger_type, T0 + 600)]
        for event in history:
            fold(state, event, recent_most=RECENT, dedupe_most=RECENT)
        trigger = summary(history[-1])
        if event_type is None:
            views.append(Context(state, None, T0 + 3600, trigger=trigger))
            continue
        event = _event(customer, f"{ids}10", event_type, T0 + 1200)
        fold(state, event, recent_most=RECENT, dedupe_most=RECENT)
        views.append(Context(state, event, event.ts, trigger=trigger))
    return views


def _history(customer: str, ids: str, products: tuple[str, ...]) -> list[Event]:
    """A seasoned customer's events before the trigger: consent, a view, a cart, a purchase."""
    if not products:
        return []
    viewed, carted = products
    shapes: list[tuple[str, dict[str, Any]]] = [
        ("sign_up", {}),
        ("consent", {"channel": "email", "granted": True}),
        ("product_view", {"product": viewed}),
        ("add_to_cart", {"product": carted, "qty": 2, "price": 19.99}),
        ("purchase", {"product": viewed, "value": 40.0, "currency": "EUR"}),
    ]
    return [_event(customer, f"{ids}{i}", kind, T0 + 60 * i, properties) for i, (kind, properties) in enumerate(shapes)]


def _event(customer: str, event_id: str, kind: str, ts: float, properties: dict[str, Any] | None = None) -> Event:
    return Event(
        event_id=event_id,
        type=kind,
        ts=ts,
        customer_key=customer,
        channel="web",
        received_at=ts,
        customer_id=customer,
        identifiers={"email": f"{customer}@example.com"},
        properties=properties or {},
    )
