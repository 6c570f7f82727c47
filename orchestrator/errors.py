"""Errors the CLI turns into one clear line and a non-zero exit."""

from orchestrator.printable import printable
from orchestrator.redact import masked_url


class CliError(Exception):
    """A user-facing failure; ``str(exc)`` is the whole message."""

    exit_code = 1


class Unreachable(CliError):
    """Kafka or Redis could not be reached."""

    exit_code = 2

    @classmethod
    def service(cls, name: str, address: str, exc: BaseException) -> "Unreachable":
        return cls(f"cannot reach {name} at {shown(address)} ({type(exc).__name__}); is it running? try 'make up'")


def redis_failure(address: str, exc: BaseException) -> CliError:
    """What a failed Redis call tells the user. No answer (refused, a timeout) is 'cannot reach'
    (exit 2, worth a retry); an answer that is an error (a database number it does not have, a
    password it refuses, out of memory) says what Redis said, exit 1, as Kafka's own errors do:
    telling the user to start a Redis that is running sends them the wrong way."""
    import redis  # here: this module stays light, and every caller has loaded redis already

    answered = (redis.ResponseError, redis.AuthenticationError, redis.exceptions.AuthorizationError)
    if isinstance(exc, answered):
        return CliError(f"Redis at {shown(address)} refused: {exc}")
    return Unreachable.service("Redis", address, exc)


def shown(address: str) -> str:
    """An address as a message names it: its password masked, and on the message's one line."""
    return printable(masked_url(address))
