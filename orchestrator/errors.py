"""Errors the CLI turns into one clear line and a non-zero exit."""


class CliError(Exception):
    """A user-facing failure; ``str(exc)`` is the whole message."""

    exit_code = 1


class Unreachable(CliError):
    """Kafka or Redis could not be reached."""

    exit_code = 2

    @classmethod
    def service(cls, name: str, address: str, exc: BaseException) -> "Unreachable":
        return cls(f"cannot reach {name} at {address} ({type(exc).__name__}); is it running? try 'make up'")
