"""ActionCommand: what the orchestrator publishes to ``actions.<channel>``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from schemas.events import CHANNEL_PATTERN, NAME_PATTERN


class ActionCommand(BaseModel):
    """One next best action for one customer on one channel.

    ``action_id`` is deterministic: the same decision on the same inputs always
    yields the same id, so a channel can drop the duplicates that at-least-once
    delivery allows.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    action_id: str = Field(min_length=1, max_length=64)
    customer_id: str = Field(min_length=1, max_length=320, description="Customer id, or kind:value if anonymous.")
    channel: str = Field(pattern=CHANNEL_PATTERN)
    action: str = Field(pattern=NAME_PATTERN, description="remarketing_ad, upsell, ...")
    payload: dict[str, Any] = Field(description="What the channel needs to act.")
    journey: str = Field(min_length=1, max_length=128, description="Which journey decided it.")
    reason: str = Field(min_length=1, max_length=1024, description="Why this action now, for humans.")
    issued_at: float = Field(description="Epoch seconds.")
    expires_at: float = Field(description="Epoch seconds; act before this or not at all.")
