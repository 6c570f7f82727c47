"""Routes. Each validates its input, does one lookup, and shapes the answer."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from orchestrator.api.errors import ApiError
from orchestrator.api.store import ProfileStore
from orchestrator.core.nba import MAX_PER_CHANNEL
from orchestrator.readmodel import decode_profile, not_found
from schemas.events import is_channel_name

STORE = web.AppKey("store", ProfileStore)
MAX_ID = 320  # longest plausible identifier (an email address is at most 320 characters)
DEFAULT_LIMIT = 3
LIMIT = re.compile(r"[0-9]{1,3}")


async def health(request: web.Request) -> web.Response:
    """Liveness only: Redis trouble shows on the data routes as 503, not here."""
    return web.json_response({"status": "ok"})


async def customer(request: web.Request) -> web.Response:
    """The profile exactly as the workers wrote it (UTF-8 JSON), with the Content-Type of
    every other answer: ``json_response`` adds the charset, a body of bytes does not."""
    _, raw = await _find(request)
    return web.Response(body=raw, content_type="application/json", charset="utf-8")


async def next_best_action(request: web.Request) -> web.Response:
    """Ranked actions for one channel, or the best across all channels (each naming its channel)."""
    channel, limit = _channel(request.query), _limit(request.query)
    key, raw = await _find(request)
    doc = decode_profile(raw)
    actions = ranked(doc.get("next_best_actions") or {}, channel)[:limit]
    return web.json_response(
        {"customer": key, "channel": channel, "actions": actions, "generated_at": doc.get("updated_at")}
    )


def ranked(by_channel: Mapping[str, list[dict[str, Any]]], channel: str | None) -> list[dict[str, Any]]:
    """One channel's list as stored (already ranked), or all channels merged best first."""
    if channel is not None:
        return [action | {"channel": channel} for action in by_channel.get(channel, ())]
    merged = [action | {"channel": ch} for ch, actions in by_channel.items() for action in actions]
    return sorted(merged, key=lambda a: (-a["score"], a["channel"], a["action"]))


async def _find(request: web.Request) -> tuple[str, bytes]:
    ident = request.match_info["id"]
    if len(ident) > MAX_ID:
        raise ApiError(400, f"id: longer than {MAX_ID} characters", parameter="id")
    found = await request.app[STORE].find(ident)
    if found is None:
        raise ApiError(404, not_found(ident))
    return found


def _channel(query: Mapping[str, str]) -> str | None:
    channel = query.get("channel")
    if channel is not None and not is_channel_name(channel):
        raise ApiError(
            400, "channel: must be a lower-case channel name such as 'web' (a-z, 0-9, _ and -)", parameter="channel"
        )
    return channel


def _limit(query: Mapping[str, str]) -> int:
    text = query.get("limit")
    if text is None:
        return DEFAULT_LIMIT
    if not LIMIT.fullmatch(text) or not 1 <= int(text) <= MAX_PER_CHANNEL:
        raise ApiError(400, f"limit: must be a whole number from 1 to {MAX_PER_CHANNEL}", parameter="limit")
    return int(text)
