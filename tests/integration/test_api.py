"""The HTTP API (`orchestrator serve`) against the real Redis: auth, parameters, lookups, errors.

The server runs as the real command in a subprocess, and profiles are written by
the same ReadModelWriter the workers use, so the key layout is tested end to end.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from orchestrator.api.store import POOL_SIZE
from orchestrator.core.decide import decide
from orchestrator.core.event import Event
from orchestrator.core.state import CustomerState
from orchestrator.readmodel import ReadModelWriter
from orchestrator.settings import Settings
from tests.integration.conftest import BOOTSTRAP, REDIS_URL
from tests.integration.harness import cli_env, free_port

TOKEN = "it-api-token"
HASH_KEY = "it-identity-hash-key"
NOW = time.time()


class Server:
    """One `orchestrator serve` process and a tiny client for it."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "orchestrator", "serve", "--port", str(self.port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while self.get("/health", token=None)[0] != 200:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"serve did not start:\n{self.log()}")
            time.sleep(0.1)

    def get(self, path: str, token: str | None = TOKEN, method: str = "GET") -> tuple[int, dict[str, Any], Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                return resp.status, json.loads(resp.read()), resp.headers
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read()), exc.headers
        except OSError:
            return 0, {}, {}

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def serve_env(prefix: str, redis_url: str = REDIS_URL, **extra: str) -> dict[str, str]:
    return cli_env(prefix, BOOTSTRAP, redis_url, ORCH_API_TOKENS=f"other-token,{TOKEN}", **extra)


def story(key: str, customer_id: str | None, identifiers: dict[str, str], *steps: tuple[str, dict]) -> CustomerState:
    """A state built by decide(), with identifiers hashed the way the deployment hashes them."""
    hashed = Settings(identity_hash_key=HASH_KEY).hasher().identifiers(identifiers)
    state = None
    for i, (kind, props) in enumerate(steps):
        ts = NOW - 60 + i
        event = Event(f"{key}-{i}", kind, ts, key, "web", ts, customer_id, hashed, props)
        state = decide(state, event, ts).state
    assert state is not None
    return state


@pytest.fixture(scope="module")
def profiles(prefix: str) -> Iterator[None]:
    """Alice (known, with a cart) and an anonymous visitor, written as a worker would; removed after."""
    alice = story(
        "c-alice",
        "c-alice",
        {"email": "Alice@Example.com", "cookie": "ck-1"},
        ("search", {"query": "tent"}),
        ("add_to_cart", {"product": "sku-1", "price": 120.0}),
    )
    visitor = story("cookie:ck-9", None, {"cookie": "ck-9"}, ("page_view", {}))

    async def write() -> None:
        writer = ReadModelWriter(REDIS_URL, prefix)
        for state in (alice, visitor):
            writer.stage(state, NOW, 0)
        await writer.aclose()

    asyncio.run(write())
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.set(f"{prefix}customer:broken", b"{not json")  # a profile nobody can read
        yield
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(scope="module")
def api(prefix: str, profiles: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(serve_env(prefix, ORCH_IDENTITY_HASH_KEY=HASH_KEY), tmp_path_factory.mktemp("api") / "serve.log")
    yield server
    server.stop()


def nba(api: Server, ident: str, query: str = "") -> tuple[int, dict[str, Any]]:
    status, body, _ = api.get(f"/v1/customers/{urllib.parse.quote(ident, safe='')}/next-best-action{query}")
    return status, body


# -- auth ---------------------------------------------------------------------------------------


def test_health_needs_no_token(api: Server) -> None:
    assert api.get("/health", token=None)[:2] == (200, {"status": "ok"})


@pytest.mark.parametrize("path", ["/v1/customers/c-alice", "/v1/customers/c-alice/next-best-action", "/v1/other"])
def test_every_v1_route_needs_a_token(api: Server, path: str) -> None:
    status, body, headers = api.get(path, token=None)
    assert status == 401
    assert body == {"error": "a bearer token is required"}
    assert headers["WWW-Authenticate"].startswith("Bearer")


def test_a_wrong_token_is_refused(api: Server) -> None:
    status, body, headers = api.get("/v1/customers/c-alice", token="not-" + TOKEN)
    assert status == 401
    assert "not valid" in body["error"]
    assert 'error="invalid_token"' in headers["WWW-Authenticate"]


def test_a_token_that_is_not_utf8_is_refused_not_an_error(api: Server) -> None:
    """aiohttp keeps such bytes as surrogates, which a plain encode() refused with a 500."""
    with socket.create_connection(("127.0.0.1", api.port), timeout=5) as conn:
        conn.sendall(b"GET /v1/customers/c-alice HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s\xffcret\r\n")
        conn.sendall(b"Connection: close\r\n\r\n")
        answer = b"".join(iter(lambda: conn.recv(65536), b""))
    assert answer.startswith(b"HTTP/1.1 401 ")
    assert "Traceback" not in api.log()


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /v1/customers/c-alice HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
        b"G@T /v1/customers/c-alice HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /v1/customers/\xff HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    ],
    ids=["header-too-long", "bad-method", "raw-non-ascii-path", "bad-content-length"],
)
def test_what_the_http_parser_refuses_is_answered_in_json_too(api: Server, request_bytes: bytes) -> None:
    """aiohttp answers these itself, before any middleware, in text/plain unless told otherwise."""
    with socket.create_connection(("127.0.0.1", api.port), timeout=5) as conn:
        conn.sendall(request_bytes)
        answer = b"".join(iter(lambda: conn.recv(65536), b""))
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0].endswith(b" 400 Bad Request")
    assert b"Content-Type: application/json; charset=utf-8" in head.split(b"\r\n")
    error = json.loads(body)["error"]
    assert error.startswith("bad request: ") and "\n" not in error
    assert "Traceback" not in api.log()


# -- profiles -----------------------------------------------------------------------------------


def test_a_profile_by_customer_key(api: Server) -> None:
    status, doc, headers = api.get("/v1/customers/c-alice")
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    assert doc["key"] == "c-alice"
    assert set(doc["cart"]) == {"sku-1"}
    assert doc["next_best_actions"]["web"][0]["action"] == "cart_reminder"


def test_an_anonymous_profile_by_its_key(api: Server) -> None:
    status, doc, _ = api.get("/v1/customers/cookie:ck-9")
    assert status == 200
    assert doc["key"] == "cookie:ck-9"


@pytest.mark.parametrize("ident", ["email:Alice@Example.com", " email: alice@example.com", "cookie:ck-1", "c-alice"])
def test_a_customer_is_found_by_any_identifier_as_a_user_types_it(api: Server, ident: str) -> None:
    status, doc, _ = api.get(f"/v1/customers/{urllib.parse.quote(ident.strip(), safe='')}")
    assert status == 200, doc
    assert doc["key"] == "c-alice"


def test_raw_email_addresses_are_not_stored_when_a_hash_key_is_set(api: Server, prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = [k.decode() for k in client.scan_iter(match=f"{prefix}*")]
        values = client.mget(keys)
    finally:
        client.close()
    assert any(k.startswith(f"{prefix}alias:email:") for k in keys)
    assert not any("alice@example.com" in text.lower() for text in keys + [v.decode() for v in values if v])


@pytest.mark.parametrize("ident", ["nobody", "email:nobody@example.com", "cookie:ck-404"])
def test_an_unknown_customer_is_a_json_404(api: Server, ident: str) -> None:
    status, body, _ = api.get(f"/v1/customers/{urllib.parse.quote(ident, safe='')}")
    assert status == 404
    assert ident in body["error"]


def test_an_id_longer_than_320_characters_is_a_400(api: Server) -> None:
    status, body, _ = api.get("/v1/customers/" + "x" * 321)
    assert status == 400
    assert body["error"].startswith("id:")


# -- next best actions --------------------------------------------------------------------------


def test_ranked_actions_for_one_channel(api: Server) -> None:
    status, body = nba(api, "c-alice", "?channel=web&limit=2")
    assert status == 200
    assert body["customer"] == "c-alice"
    assert body["channel"] == "web"
    assert body["generated_at"] == pytest.approx(NOW)
    assert [a["action"] for a in body["actions"]] == ["cart_reminder", "recommend"]
    first = body["actions"][0]
    assert first["channel"] == "web"
    assert first["reason"] and first["payload"]["incentive"]["percent"] == 15
    assert 0 <= body["actions"][1]["score"] <= first["score"] <= 1


def test_best_actions_across_channels_name_their_channel(api: Server) -> None:
    status, body = nba(api, "email:Alice@Example.com")
    assert status == 200
    assert body["channel"] is None
    assert len(body["actions"]) == 3  # the default limit
    scores = [a["score"] for a in body["actions"]]
    assert scores == sorted(scores, reverse=True)
    assert all(a["channel"] for a in body["actions"])


def test_a_channel_with_nothing_to_say_is_an_empty_list(api: Server) -> None:
    status, body = nba(api, "c-alice", "?channel=atm")
    assert (status, body["actions"]) == (200, [])


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("?channel=Web", "channel"),
        ("?channel=", "channel"),
        ("?channel=web%0A", "channel"),
        ("?channel=" + "w" * 65, "channel"),
        ("?channel=web;drop", "channel"),
        ("?limit=0", "limit"),
        ("?limit=21", "limit"),
        ("?limit=three", "limit"),
        ("?limit=1.5", "limit"),
        ("?limit=-1", "limit"),
        ("?limit=", "limit"),
    ],
)
def test_bad_parameters_are_a_400_that_says_which_and_why(api: Server, query: str, parameter: str) -> None:
    status, body = nba(api, "c-alice", query)
    assert status == 400
    assert body["parameter"] == parameter
    assert body["error"].startswith(f"{parameter}: must ")


def test_bad_parameters_are_refused_before_the_customer_is_looked_up(api: Server) -> None:
    assert nba(api, "nobody", "?limit=99")[0] == 400


def test_next_best_action_for_an_unknown_customer_is_a_404(api: Server) -> None:
    assert nba(api, "nobody", "?channel=web")[0] == 404


def test_a_forgotten_customer_cannot_be_found_by_key_or_identifier(api: Server, prefix: str) -> None:
    gone = story("c-gone", "c-gone", {"email": "gone@example.com"}, ("page_view", {}))
    hashed = Settings(identity_hash_key=HASH_KEY).hasher().token("email", "gone@example.com")

    async def write(forget: bool) -> None:
        writer = ReadModelWriter(REDIS_URL, prefix)
        if forget:
            writer.forget(["c-gone"], [hashed, "customer_id:c-gone"], 0)
        else:
            writer.stage(gone, NOW, 0)
        await writer.aclose()

    asyncio.run(write(forget=False))
    assert api.get("/v1/customers/email:gone@example.com")[0] == 200
    asyncio.run(write(forget=True))
    assert api.get("/v1/customers/email:gone@example.com")[0] == 404
    assert api.get("/v1/customers/c-gone")[0] == 404


# -- one Content-Type ---------------------------------------------------------------------------

JSON_UTF8 = "application/json; charset=utf-8"


@pytest.mark.parametrize(
    ("path", "token"),
    [
        ("/health", None),
        ("/v1/customers/c-alice", TOKEN),
        ("/v1/customers/c-alice/next-best-action", TOKEN),
        ("/v1/customers/nobody", TOKEN),
        ("/v1/customers/c-alice", None),
        ("/v1/nothing-here", TOKEN),
    ],
)
def test_every_answer_has_the_same_content_type(api: Server, path: str, token: str | None) -> None:
    assert api.get(path, token=token)[2]["Content-Type"] == JSON_UTF8


# -- failures -----------------------------------------------------------------------------------


def test_an_internal_error_is_a_json_500_without_a_traceback(api: Server) -> None:
    status, body, _ = api.get("/v1/customers/broken/next-best-action")
    assert (status, body) == (500, {"error": "internal error"})
    assert "Traceback" in api.log()  # logged for engineers, not sent to the client


def test_unknown_routes_and_methods_answer_in_json(api: Server) -> None:
    assert api.get("/v1/nothing-here")[:2] == (404, {"error": "not found"})
    status, body, headers = api.get("/v1/customers/c-alice", method="DELETE")
    assert (status, body) == (405, {"error": "method not allowed"})
    assert "GET" in headers["Allow"]


def test_the_redis_pool_is_open_before_the_first_request(prefix: str, tmp_path: Path) -> None:
    """A server that connected on demand shed the first burst after a start with 503s."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        before = client.info("clients")["connected_clients"]
        server = Server(serve_env(prefix), tmp_path / "serve.log")
        try:
            opened = client.info("clients")["connected_clients"] - before
        finally:
            server.stop()
    finally:
        client.close()
    assert opened >= POOL_SIZE


def test_redis_down_is_a_json_503(prefix: str, tmp_path: Path) -> None:
    server = Server(serve_env(prefix, redis_url=f"redis://127.0.0.1:{free_port()}/0"), tmp_path / "serve.log")
    try:
        status, body, headers = server.get("/v1/customers/c-alice")
    finally:
        server.stop()
    assert status == 503
    assert "unavailable" in body["error"]
    assert headers["Retry-After"] == "1"


def test_serve_refuses_to_start_without_tokens(prefix: str) -> None:
    env = cli_env(prefix, BOOTSTRAP, REDIS_URL)
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", "serve", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("orchestrator: error: the API needs at least one bearer token")
