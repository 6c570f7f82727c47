"""Fixtures for unit and integration tests alike."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest


@pytest.fixture
def refused_sockets_collected() -> Iterator[None]:
    """kafka-python 3.0 leaves the socket of a refused connection for the garbage collector to
    close. Collected while the test's warning filter applies, and after the fixtures listed
    after this one (caplog's records) let them go: collected later, they failed whichever
    test was running then. List it first."""
    yield
    gc.collect()
