"""Entry point: one typer app, every failure a single line on stderr.

Only the command asked for is imported: each pulls in its own heavy libraries (Kafka,
Redis, CEL, the HTTP server), and importing all of them made every command, ``--help``
included, pay about 0.8 s before doing anything.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys

import typer

from orchestrator.errors import CliError

# command name -> the module under orchestrator.cli holding a function of the same name
COMMANDS = ("worker", "send", "tail", "customer", "explain", "simulate", "replay", "serve", "erase")
GROUPS = ("journeys",)  # name -> the module's typer ``app``


def build(argv: list[str]) -> typer.Typer:
    """The app with the command ``argv`` names, or with every command when it names none
    (``--help``, a typo): then the help lists them all and click names the mistake."""
    app = typer.Typer(
        name="orchestrator",
        help="Real-time customer journey orchestrator: events in, next best actions out.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )
    app.callback()(_group)
    asked = argv[1] if len(argv) > 1 else None
    for name in [asked] if asked in COMMANDS + GROUPS else COMMANDS + GROUPS:
        module = importlib.import_module(f"orchestrator.cli.{name}")
        if name in GROUPS:
            app.add_typer(module.app, name=name)
        else:
            app.command(name)(getattr(module, name))
    return app


def _group() -> None:
    """Keeps the app a group of commands even when only one is registered."""


def main() -> None:
    try:
        build(sys.argv)()
    except CliError as exc:
        print(f"orchestrator: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:  # the reader of the output has all it wants (| head): no error to tell
        stdout_to_nowhere()
        sys.exit(1)
    except OSError as exc:  # what no command turns into a CliError: the output cannot be written (a full disk)
        stdout_to_nowhere()
        where = f": {exc.filename}" if exc.filename else ""
        print(f"orchestrator: error: {exc.strerror or exc}{where}", file=sys.stderr)
        sys.exit(1)


def stdout_to_nowhere() -> None:
    """Standard output that failed a write is pointed at /dev/null, so the interpreter's
    flush at exit does not fail again with a traceback of its own after the one-line error."""
    with contextlib.suppress(OSError, ValueError):  # no descriptor to repoint (a test's captured output)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
