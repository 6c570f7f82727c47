"""Drive a real ``orchestrator worker`` process and the topics around it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from kafka import KafkaProducer

from orchestrator.kafka.tail import Record, follow
from orchestrator.topics import TopicNames
from schemas.codec import content_type_of, decode_payload, encode_payload

READY_TIMEOUT_S = 90.0
_GIVEN: set[int] = set()  # ports free_port handed out from ORCH_TEST_PORTS


def free_port() -> int:
    """A port nothing listens on; from ``ORCH_TEST_PORTS`` (``first-last``) when set, so runs
    that share a machine can keep their workers' web ports apart."""
    first, _, last = os.environ.get("ORCH_TEST_PORTS", "").partition("-")
    for port in range(int(first), int(last) + 1) if first and last else [0]:
        if port in _GIVEN:  # handed out already, maybe to a worker not listening yet
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            given = int(sock.getsockname()[1])
            _GIVEN.add(given)
            return given
    raise OSError(f"no free port in ORCH_TEST_PORTS={first}-{last}")


def listening_on(port: int) -> set[str]:
    """The addresses where a TCP socket listens on ``port`` (Linux's /proc/net/tcp, IPv4 only)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, _, hex_port = local.partition(":")
        if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
            found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


def cli_env(prefix: str, bootstrap: str, redis_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    env |= {"ORCH_TOPIC_PREFIX": prefix, "ORCH_KAFKA_BOOTSTRAP": bootstrap, "ORCH_REDIS_URL": redis_url}
    return env | extra


class WorkerProcess:
    """One worker subprocess with its own prefix, data folder and web port."""

    def __init__(self, *, prefix: str, bootstrap: str, redis_url: str, web_port: int, data_dir: Path, **env: str):
        self.prefix, self.bootstrap, self.redis_url = prefix, bootstrap, redis_url
        self.web_port, self.data_dir = web_port, data_dir
        self.names = TopicNames(prefix)
        self.log_path = data_dir / "worker.log"
        self.env = cli_env(
            prefix, bootstrap, redis_url, ORCH_WEB_PORT=str(web_port), ORCH_DATA_DIR=str(data_dir / "state"), **env
        )
        self._proc: subprocess.Popen[bytes] | None = None
        self._producer: KafkaProducer | None = None

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> None:
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        """Start the process without waiting for it to be ready."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "orchestrator", "worker", "--loglevel", "info"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_exit(self, timeout: float) -> int:
        """The exit code of a worker expected to stop by itself."""
        assert self._proc is not None
        try:
            code = self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"worker still running after {timeout}s:\n{self.log_tail()}") from None
        self._proc = None
        return code

    def returncode(self) -> int | None:
        """The exit code of a process that has ended by itself; None while it runs or if never started."""
        return None if self._proc is None else self._proc.poll()

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise AssertionError(f"worker exited with {self._proc.returncode}:\n{self.log_tail()}")
            if self.http("/ready")[0] == 200:
                return
            time.sleep(0.3)
        raise AssertionError(f"worker not ready after {timeout}s:\n{self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self._producer is not None:
            self._producer.close()
            self._producer = None
        if self._proc is None:
            return 0
        self._proc.send_signal(sig)
        try:
            code = self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            code = self._proc.wait()
        self._proc = None
        return code

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    # -- I/O -----------------------------------------------------------------
    def http(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}{path}", timeout=3) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError:
            return 0, b""

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample on /metrics (0.0 when absent)."""
        _, body = self.http("/metrics")
        want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else "")
        for line in body.decode().splitlines():
            series, _, value = line.rpartition(" ")
            if _normalise(series) == want:
                return float(value)
        return 0.0

    @property
    def producer(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = KafkaProducer(bootstrap_servers=self.bootstrap.split(","), acks="all")
        return self._producer

    def publish(self, channel: str, *events: dict[str, Any], raw: bytes | None = None, key: str = "") -> None:
        """Publish events (msgpack) or one raw payload to ``events.<channel>``, and flush."""
        topic = self.names.events(channel)
        for event in events:
            self.producer.send(topic, key=str(event.get("customer_id", "")).encode(), value=encode_payload(event))
        if raw is not None:
            self.producer.send(topic, key=key.encode() or None, value=raw)
        self.producer.flush(timeout=30)

    def read(self, pattern: str, count: int, timeout: float = 45.0) -> list[Record]:
        """The first ``count`` records on topics matching ``pattern`` (from the beginning)."""
        records: list[Record] = []
        for record in follow(self.bootstrap, pattern, from_beginning=True, deadline=time.monotonic() + timeout):
            records.append(record)
            if len(records) >= count:
                break
        return records

    def commands(self, count: int, timeout: float = 45.0, customer: str | None = None) -> list[dict[str, Any]]:
        """Decoded commands from every actions.* topic, optionally for one customer."""
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        for record in follow(self.bootstrap, self.names.actions_pattern, from_beginning=True, deadline=deadline):
            command = decode_payload(record.value or b"", content_type_of(record.headers))
            if customer is None or command["customer_id"] == customer:
                found.append(command)
            if len(found) >= count:
                break
        return found


def _normalise(series: str) -> str:
    """Sort a sample's labels so lookups do not depend on exposition order."""
    if "{" not in series:
        return series
    name, _, rest = series.partition("{")
    labels = sorted(part for part in rest.rstrip("}").split(",") if part)
    return name + "{" + ",".join(labels) + "}"


def event(event_id: str, kind: str, customer: str, **properties: Any) -> dict[str, Any]:
    return {"event_id": event_id, "type": kind, "ts": time.time(), "customer_id": customer, "properties": properties}


def as_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, separators=(",", ":"))
