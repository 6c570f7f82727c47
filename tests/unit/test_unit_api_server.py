"""The sentence a client gets when aiohttp's HTTP parser refuses its request."""

from __future__ import annotations

from orchestrator.api.server import parser_error


def test_the_parsers_message_is_kept_to_its_first_line() -> None:
    message = "Invalid method encountered:\n\n  b'G@T / HTTP/1.1'\n     ^"
    assert parser_error(400, message) == "bad request: Invalid method encountered"


def test_without_a_message_the_status_phrase_is_the_error() -> None:
    assert parser_error(400, None) == "bad request"
    assert parser_error(431, "") == "request header fields too large"


def test_a_server_side_failure_says_no_more_than_internal_error() -> None:
    assert parser_error(500, "Traceback (most recent call last): ...") == "internal error"


def test_an_unknown_status_still_gets_a_sentence() -> None:
    assert parser_error(499, "closed") == "error: closed"
