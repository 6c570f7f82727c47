"""Tell of a dependency's outage twice in the log: when it begins and when it ends.

A check that runs every few seconds against Kafka or Redis would otherwise warn at every
tick for as long as the outage lasts, and bury the one line that says what is wrong.
"""

from __future__ import annotations

import logging
import time


class Outage:
    """A warning at the first failure, an info line with its length at the first success after."""

    def __init__(self, what: str, log: logging.Logger) -> None:
        self.what = what  # what fails, as the log line names it: "topic discovery"
        self.log = log
        self.since: float | None = None  # monotonic time of the first failure; None: all well

    def failed(self, exc: BaseException) -> None:
        if self.since is None:
            self.since = time.monotonic()
            self.log.warning("%s fails: %s; trying again quietly until it works", self.what, exc)

    def succeeded(self) -> None:
        if self.since is not None:
            self.log.info("%s works again after %.0f s", self.what, time.monotonic() - self.since)
            self.since = None
