"""``orchestrator worker``: run the stream agents."""

from __future__ import annotations

import errno
import socket
from pathlib import Path
from typing import Annotated, Any

import typer

from orchestrator.cli.locks import hold_data_dir, hold_web_port, port_taken
from orchestrator.cli.options import Bootstrap, Prefix, RedisUrl, settings
from orchestrator.errors import CliError, redis_failure
from orchestrator.journeys.loader import valid_journeys
from orchestrator.kafka.clients import check_kafka


def worker(
    bootstrap: Bootstrap = None,
    prefix: Prefix = None,
    redis_url: RedisUrl = None,
    web_port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Port for /metrics (env ORCH_WEB_PORT).")
    ] = None,
    data_dir: Annotated[Path | None, typer.Option(help="RocksDB folder (env ORCH_DATA_DIR).")] = None,
    loglevel: Annotated[
        str | None, typer.Option("--loglevel", "-l", help="debug, info, warning, error (env ORCH_LOG_LEVEL).")
    ] = None,
) -> None:
    """Run a worker: consume events.*, keep customer state, emit commands, serve /metrics.

    Start more workers with the same settings (and their own --web-port and
    --data-dir) to share the partitions between them.
    """
    conf = settings(
        kafka_bootstrap=bootstrap,
        topic_prefix=prefix,
        redis_url=redis_url,
        web_port=web_port,
        data_dir=data_dir,
        log_level=loglevel,
    )
    if conf.journeys_dir is not None:
        valid_journeys(conf.journeys_dir)  # a mistake in them is said at once, not after the wait for Kafka
    check_kafka(conf.kafka_bootstrap)
    check_redis(conf.redis_url)
    check_web_port(conf.web_host, conf.web_port)
    hold_web_port(conf.web_host, conf.web_port)
    hold_data_dir(conf.data_dir)

    from orchestrator.app import create_app

    app = create_app(conf)
    make_worker(app, conf.log_level).execute_from_commandline()


def make_worker(app: Any, loglevel: str) -> Any:
    """Faust's worker, without its terminal spinner.

    At ``warning`` and above, Faust's worker adds a handler that turns its spinner on every
    log record and sets the *root* logger to DEBUG for it, so every ``log.debug`` in Faust,
    aiokafka and mode builds a record and walks the handlers: about 8 % of a busy worker's
    CPU. Without the spinner the root logger stays at ``loglevel``."""
    from faust.worker import Worker

    worker = Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.spinner = None
    return worker


def check_redis(url: str) -> None:
    """Raise :class:`CliError` unless Redis answers: unreachable, or what it said instead."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        raise redis_failure(url, exc) from exc
    finally:
        client.close()


def check_web_port(host: str, port: int) -> None:
    """Raise :class:`CliError` unless the worker can listen on ``host:port``.

    Faust finds out only once the worker has joined the group, and then logged an error and
    a traceback; a second worker started with the first one's settings is the usual cause.
    The port is bound as aiohttp will (SO_REUSEADDR), and let go at once."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise port_taken(host, port, "another worker?") from exc
        raise CliError(f"cannot listen on {host}:{port} ({exc.strerror}): check ORCH_WEB_HOST") from exc
