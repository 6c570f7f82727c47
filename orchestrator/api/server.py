"""Running the API: aiohttp's own runner, with the HTTP parser's refusals answered in JSON too.

aiohttp answers a request its parser cannot read (a header over 8,190 bytes, a method it cannot
read, a raw non-ASCII byte in the path) before any middleware runs, in ``text/plain``, and logs
the client's mistake with a traceback. A client that parses every error as JSON then fails on
the one answer it most needs to understand. The protocol class below answers those in the same
``{"error": ...}`` shape as the rest of the API and logs them as one line. aiohttp offers no
setting for it: the class is chosen by its ``Server``, so the runner swaps that for a subclass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from http import HTTPStatus

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from orchestrator.api.errors import json_error

log = logging.getLogger(__name__)


def parser_error(status: int, message: str | None) -> str:
    """The sentence a client gets for a request aiohttp could not read (never a traceback)."""
    if status >= 500:
        return "internal error"
    try:
        phrase = HTTPStatus(status).phrase.lower()
    except ValueError:
        phrase = "error"
    first_line = (message or "").strip().splitlines()[:1]  # the parser adds the raw line and a caret below
    return f"{phrase}: {first_line[0].rstrip(':')}" if first_line else phrase


class _JsonErrorProtocol(RequestHandler):
    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:  # as aiohttp: part of an answer went out, only closing is left
            raise ConnectionError("Response is sent already, cannot send another response with the error message")
        error = parser_error(status, message)
        if status >= 500:
            log.error("request from %s failed before the API saw it", request.remote, exc_info=exc)
        else:
            # debug, as aiohttp logs bad methods: scanners on an open port would otherwise fill the log
            log.debug("refused a request from %s: %s", request.remote, error)
        response = json_error(status, error)
        response.force_close()  # aiohttp closes the connection after its own error answers too
        return response


class _JsonErrorServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _JsonErrorProtocol(self, loop=self._loop, **self._kwargs)


class JsonErrorRunner(web.AppRunner):
    """``web.AppRunner`` whose connections answer parser errors in JSON."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _JsonErrorServer  # the same server, only its protocol factory differs
        return server


def run(app: web.Application, host: str, port: int, announce: Callable[[], None]) -> None:
    """Serve until SIGINT or SIGTERM, as ``web.run_app`` does (which cannot take another runner)."""
    with contextlib.suppress(web.GracefulExit, KeyboardInterrupt):
        asyncio.run(_serve(app, host, port, announce))


async def _serve(app: web.Application, host: str, port: int, announce: Callable[[], None]) -> None:
    runner = JsonErrorRunner(app, handle_signals=True, access_log=None)  # a log line per request costs more
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        announce()
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
