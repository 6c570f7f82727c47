"""Every failure is a JSON body with an ``error`` sentence, and never a stack trace."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import redis
from aiohttp import web
from aiohttp.typedefs import Handler

log = logging.getLogger(__name__)
KEPT_HEADERS = ("Allow", "WWW-Authenticate")  # what a client needs from aiohttp's own errors
OUTAGE_LOG_EVERY_S = 10.0  # Redis down at 1,000 requests/s must not mean 1,000 log lines/s
_last_outage_log = [0.0]


class ApiError(Exception):
    """A refusal the client can act on: its status, a sentence, and any extra fields."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


def json_error(status: int, message: str, headers: Mapping[str, str] | None = None, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status, headers=headers)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost middleware: turns whatever goes wrong into a JSON answer.

    Redis trouble is the client's cue to retry (503); anything unexpected is
    logged here with its traceback and answered with a bare 500."""
    try:
        return await handler(request)
    except ApiError as exc:
        return json_error(exc.status, exc.message, **exc.extra)
    except web.HTTPException as exc:  # aiohttp's own: unknown route, wrong method
        if exc.status < 400:
            raise
        kept = {name: exc.headers[name] for name in KEPT_HEADERS if name in exc.headers}
        return json_error(exc.status, (exc.reason or "error").lower(), headers=kept)
    except redis.RedisError as exc:
        if time.monotonic() - _last_outage_log[0] >= OUTAGE_LOG_EVERY_S:
            _last_outage_log[0] = time.monotonic()
            log.warning("read model unavailable (logged every %gs at most): %s", OUTAGE_LOG_EVERY_S, exc)
        return json_error(503, "the read model is unavailable; try again shortly", headers={"Retry-After": "1"})
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return json_error(500, "internal error")
