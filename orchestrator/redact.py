"""Passwords in connection URLs (a Redis URL, a Kafka server), kept out of what is printed or logged.

A message that names the Redis it could not reach is read on a terminal, pasted into a ticket,
kept in a log: the URL's password must not travel with it.
"""

from __future__ import annotations

import re

MASK = "***"
SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+._-]*://")  # '_' too: Kafka's SASL_SSL://
# The user information's password runs to the URL's last '@', not urllib's first '/', '?' or '#':
# a password holding one of those unencoded is then hidden whole. (An '@' in a path or query
# hides more than the password, never less.)
USERINFO_PASSWORD = re.compile(r"^(?P<kept>[^:@/]*:)(?P<password>.+)@(?=[^@]*$)", re.DOTALL)
# redis-py also takes the password as a query argument: redis://host/0?password=...
QUERY_PASSWORD = re.compile(r"(?P<kept>[?&]password=)(?P<password>[^&#]+)", re.IGNORECASE)


def masked_url(url: str) -> str:
    """``url`` with every password in it written ``***``, the rest (user, host, port,
    database) kept, so the message still says where: ``redis://user:***@host:6379/0``."""
    scheme, rest = _scheme(url)
    rest = USERINFO_PASSWORD.sub(rf"\g<kept>{MASK}@", rest, count=1)
    return scheme + QUERY_PASSWORD.sub(rf"\g<kept>{MASK}", rest)


def url_passwords(url: str) -> list[str]:
    """The passwords ``url`` holds, as written in it (percent-encoding and all)."""
    _, rest = _scheme(url)
    in_query = [each["password"] for each in QUERY_PASSWORD.finditer(rest)]
    return [password, *in_query] if (password := userinfo_password(url)) else in_query


def userinfo_password(url: str) -> str | None:
    """The password before the host (``redis://user:PASSWORD@host``), if any."""
    found = USERINFO_PASSWORD.match(_scheme(url)[1])
    return found["password"] if found else None


def scrubbed(text: str, url: str) -> str:
    """``text`` (a library's message about ``url``) with the URL's passwords written ``***``:
    urllib quotes a URL's whole address part in some of its errors."""
    for password in url_passwords(url):
        text = text.replace(password, MASK)
    return text


def _scheme(url: str) -> tuple[str, str]:
    """``("redis://", "the rest")``; no scheme (a Kafka server, ``user:pw@host:9092``) is ``""``."""
    found = SCHEME.match(url)
    return (found[0], url[found.end() :]) if found else ("", url)
