"""The HTTP API: channels that talk to a customer live ask "who is this, and what now?".

Read-only and cheap: every answer comes from the Redis read model the workers
keep (one GET, or two when the customer is named by an identifier), so serving
never touches Kafka or the state tables.
"""

from orchestrator.api.app import create_app

__all__ = ["create_app"]
