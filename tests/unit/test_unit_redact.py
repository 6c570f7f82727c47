"""Passwords in connection URLs are masked wherever a URL is shown; the rest still says where."""

from __future__ import annotations

import pytest

from orchestrator.redact import masked_url, scrubbed, url_passwords


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://user:s3cret@host/0", "redis://user:***@host/0"),
        ("rediss://user:s3cret@host:6380/1", "rediss://user:***@host:6380/1"),
        ("unix://:s3cret@/run/redis.sock?db=0", "unix://:***@/run/redis.sock?db=0"),
        ("redis://host/0?password=s3cret&db=1", "redis://host/0?password=***&db=1"),
        ("user:s3cret@broker:9092", "user:***@broker:9092"),
        ("redis://:s3c@r/t#x@host/0", "redis://:***@host/0"),  # unencoded '@', '/', '#' in it: hidden whole
    ],
)
def test_a_password_is_masked_and_the_user_host_port_and_database_kept(url: str, shown: str) -> None:
    assert masked_url(url) == shown


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", "redis://user@host/0", "redis://:@host/0", "broker:9092", "[::1]:9092"]
)
def test_a_url_without_a_password_is_shown_as_it_is(url: str) -> None:
    assert masked_url(url) == url
    assert url_passwords(url) == []


def test_a_message_quoting_the_url_has_its_passwords_masked() -> None:
    url = "redis://:s3cret@host:6379/0?password=other"
    message = "netloc ':s3cret@host:6379' contains invalid characters; password=other"

    assert url_passwords(url) == ["s3cret", "other"]
    assert scrubbed(message, url) == "netloc ':***@host:6379' contains invalid characters; password=***"
