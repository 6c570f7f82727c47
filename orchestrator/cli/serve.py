"""``orchestrator serve``: the HTTP API over the Redis read model."""

from __future__ import annotations

import gc
import logging
from typing import Annotated

import typer

from orchestrator.cli.options import Prefix, RedisUrl, settings
from orchestrator.errors import CliError


def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (env ORCH_API_HOST).")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port to listen on (env ORCH_API_PORT).")] = None,
    redis_url: RedisUrl = None,
    prefix: Prefix = None,
) -> None:
    """Serve profiles and next best actions over HTTP; needs ORCH_API_TOKENS."""
    conf = settings(api_host=host, api_port=port, redis_url=redis_url, topic_prefix=prefix)
    from orchestrator.api import create_app, server

    app = create_app(conf)
    gc.collect()
    gc.freeze()  # what is loaded by now lives forever: keep it out of every later GC pass (shorter pauses)
    logging.basicConfig(level=conf.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    where = f"http://{conf.api_host}:{conf.api_port}"
    try:
        announce = lambda: typer.echo(f"orchestrator: serving on {where} (Ctrl-C stops)", err=True)  # noqa: E731
        server.run(app, conf.api_host, conf.api_port, announce)
    except OSError as exc:
        raise CliError(f"cannot listen on {conf.api_host}:{conf.api_port}: {exc.strerror or exc}") from None
