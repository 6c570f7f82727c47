"""Bearer tokens: every route but ``/health`` needs one of the configured tokens.

Unknown paths are refused too when the token is missing, so an anonymous
caller learns nothing about which routes exist.
"""

from __future__ import annotations

import hmac

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from orchestrator.api.errors import json_error

PUBLIC_PATHS = frozenset({"/health"})
REALM = 'Bearer realm="orchestrator"'


def bearer_auth(tokens: frozenset[str]) -> Middleware:
    """A middleware accepting ``Authorization: Bearer <token>`` for any of ``tokens``."""
    known = tuple(token.encode() for token in sorted(tokens))

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in PUBLIC_PATHS:
            return await handler(request)
        given = _bearer(request.headers.get("Authorization", ""))
        if given is None:
            return json_error(401, "a bearer token is required", headers={"WWW-Authenticate": REALM})
        if not _matches(given.encode("utf-8", "surrogateescape"), known):  # as aiohttp decoded the bytes
            challenge = f'{REALM}, error="invalid_token"'
            return json_error(401, "the bearer token is not valid", headers={"WWW-Authenticate": challenge})
        return await handler(request)

    return middleware


def _bearer(header: str) -> str | None:
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _matches(given: bytes, known: tuple[bytes, ...]) -> bool:
    """Constant time per token, and every token compared, so timing says nothing about which matched."""
    found = False
    for token in known:
        found |= hmac.compare_digest(given, token)
    return found
