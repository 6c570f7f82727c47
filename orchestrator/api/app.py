"""Building and running the API application."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import redis
from aiohttp import web

from orchestrator.api import handlers
from orchestrator.api.auth import bearer_auth
from orchestrator.api.errors import json_errors
from orchestrator.api.store import ProfileStore, connect
from orchestrator.errors import CliError
from orchestrator.settings import Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> web.Application:
    """The application, refusing to exist without a token: an open API would expose every profile."""
    if not settings.api_tokens:
        raise CliError("the API needs at least one bearer token: set ORCH_API_TOKENS (comma-separated)")
    app = web.Application(middlewares=[json_errors, bearer_auth(settings.api_tokens)])
    # Created here, connected lazily inside the loop: keys cannot be set once the app runs.
    app[handlers.STORE] = ProfileStore(connect(settings.redis_url), settings.topic_prefix, settings.hasher())
    app.cleanup_ctx.append(_redis_lifetime)
    app.router.add_get("/health", handlers.health)
    app.router.add_get("/v1/customers/{id}", handlers.customer)
    app.router.add_get("/v1/customers/{id}/next-best-action", handlers.next_best_action)
    return app


async def _redis_lifetime(app: web.Application) -> AsyncIterator[None]:
    """Open the Redis pool at start, or warn when Redis is away (requests get 503 until it is
    back); close the pool at the end."""
    store = app[handlers.STORE]
    try:
        await store.warm()
    except redis.RedisError as exc:
        log.warning("Redis is not reachable yet (%s); answering 503 until it is", exc)
    yield
    await store.close()
