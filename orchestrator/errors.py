"""Errors the CLI turns into one clear line and a non-zero exit."""


class CliError(Exception):
    """A user-facing failure; ``str(exc)`` is the whole message."""

    exit_code = 1


class Unreachable(CliError):
    """Kafka or Redis could not be reached."""

    exit_code = 2
