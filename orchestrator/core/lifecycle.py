"""Lifecycle stage, derived from state rather than stored, so it can never go stale."""

from __future__ import annotations

from orchestrator.core.state import CustomerState

LAPSE_AFTER_S = 90 * 86400.0
ENGAGING_TYPES = frozenset(
    {"add_to_cart", "email_open", "email_click", "ad_click", "store_visit", "app_open", "signup", "support_contact"}
)
STAGES = ("anonymous", "prospect", "engaged", "customer", "repeat", "lapsed")


def stage(state: CustomerState, now: float) -> str:
    """anonymous -> prospect -> engaged -> customer -> repeat, or lapsed when quiet too long."""
    if state.purchases and now - state.last_seen > LAPSE_AFTER_S:
        return "lapsed"
    if state.purchases >= 2:
        return "repeat"
    if state.purchases == 1:
        return "customer"
    if any(state.type_counts.get(t) for t in ENGAGING_TYPES):
        return "engaged"
    return "prospect" if state.customer_id else "anonymous"
