"""Entry point: one typer app, every failure a single line on stderr."""

from __future__ import annotations

import sys

import typer

from orchestrator.cli import customer, erase, explain, journeys, replay, send, serve, simulate, tail, worker
from orchestrator.errors import CliError

app = typer.Typer(
    name="orchestrator",
    help="Real-time customer journey orchestrator: events in, next best actions out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("worker")(worker.worker)
app.command("send")(send.send)
app.command("tail")(tail.tail)
app.command("customer")(customer.customer)
app.command("explain")(explain.explain)
app.command("simulate")(simulate.simulate)
app.command("replay")(replay.replay)
app.command("serve")(serve.serve)
app.command("erase")(erase.erase)
app.add_typer(journeys.app, name="journeys")


def main() -> None:
    try:
        app()
    except CliError as exc:
        print(f"orchestrator: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
