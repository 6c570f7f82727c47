"""Settings from ORCH_* environment variables, and the policy and limits they produce."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from pydantic import ValidationError

from orchestrator.core.policy import Policy
from orchestrator.ingest import Limits
from orchestrator.settings import Settings


def test_consent_required_channels_are_read_as_a_comma_separated_list(monkeypatch):
    monkeypatch.setenv("ORCH_CONSENT_REQUIRED_CHANNELS", "sms, email")
    settings = Settings()
    assert settings.consent_required_channels == frozenset({"sms", "email"})
    assert settings.policy().consent_required_channels == frozenset({"sms", "email"})


def test_an_empty_channel_list_means_no_channel(monkeypatch):
    monkeypatch.setenv("ORCH_CONSENT_REQUIRED_CHANNELS", " , ")
    assert Settings().consent_required_channels == frozenset()


def test_the_channels_to_create_are_read_as_a_comma_separated_list(monkeypatch):
    monkeypatch.setenv("ORCH_CHANNELS", "web,kiosk")
    assert Settings().channels == frozenset({"web", "kiosk"})


def test_the_channels_addressed_by_an_identifier_are_read_as_pairs(monkeypatch):
    assert Settings().policy().channel_addresses == (("email", "email"), ("sms", "phone"))
    monkeypatch.setenv("ORCH_CHANNEL_ADDRESSES", " whatsapp : phone , email:email")
    assert Settings().policy().channel_addresses == (("whatsapp", "phone"), ("email", "email"))
    monkeypatch.setenv("ORCH_CHANNEL_ADDRESSES", "")
    assert Settings().policy().channel_addresses == ()


def test_numbers_are_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("ORCH_FREQUENCY_CAP_PER_DAY", "5")
    monkeypatch.setenv("ORCH_MAX_DEPTH", "4")
    settings = Settings()
    assert settings.policy().frequency_cap_per_day == 5
    assert settings.limits().max_depth == 4


def test_the_defaults_give_the_default_policy_and_limits(monkeypatch):
    for name in (
        "ORCH_CONSENT_REQUIRED_CHANNELS",
        "ORCH_FREQUENCY_CAP_PER_DAY",
        "ORCH_REMARKETING_COOLDOWN_S",
        "ORCH_REMARKETING_DISCOUNT_PERCENT",
        "ORCH_CART_DISCOUNT_PERCENT",
        "ORCH_RECENT_EVENTS",
        "ORCH_DEDUPE_WINDOW",
        "ORCH_MAX_MESSAGE_BYTES",
        "ORCH_MAX_DEPTH",
        "ORCH_MAX_FUTURE_SKEW_S",
    ):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.policy() == Policy()
    assert settings.limits() == Limits()


def test_the_app_id_carries_the_topic_prefix():
    assert Settings(topic_prefix="p.", app_id="orch").full_app_id == "p.orch"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ORCH_OUTPUT_ENCODING", "xml"),
        ("ORCH_MAX_DEPTH", "1"),
        ("ORCH_PARTITIONS", "0"),
        ("ORCH_WEB_PORT", "99999"),
        ("ORCH_API_PORT", "0"),
        ("ORCH_CHANNELS", "web,BAD CH"),
        ("ORCH_QUIET_HOURS_EXEMPT_CHANNELS", "Ads"),
        ("ORCH_CHANNEL_ADDRESSES", "email"),
        ("ORCH_CHANNEL_ADDRESSES", "email:e-mail"),
        ("ORCH_CHANNEL_ADDRESSES", "Email:email"),
        ("ORCH_RULES", "remarketting"),
        ("ORCH_IDENTITY_HASH_KINDS", "emial"),
        ("ORCH_LOG_LEVEL", "loud"),
        ("ORCH_READMODEL_FLUSH_INTERVAL_S", "-1"),
        ("ORCH_READMODEL_BATCH_MAX", "0"),
        ("ORCH_REMARKETING_DISCOUNT_PERCENT", "150"),
        ("ORCH_TOPIC_DISCOVERY_INTERVAL_S", "0"),
        ("ORCH_MAX_MESSAGE_BYTES", "-1"),
        ("ORCH_MAX_MESSAGE_BYTES", "1023"),
    ],
)
def test_nonsense_settings_are_refused_at_start(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


@pytest.mark.parametrize("prefix", ["", "p.", "team-a_1."])
def test_a_topic_prefix_of_the_characters_kafka_allows_is_taken(prefix):
    assert Settings(topic_prefix=prefix).topic_prefix == prefix


@pytest.mark.parametrize("prefix", ["Bad Prefix!", "p/", "é."])
def test_a_topic_prefix_kafka_would_refuse_in_a_topic_name_is_refused_at_once(prefix):
    with pytest.raises(ValidationError, match="topic_prefix"):
        Settings(topic_prefix=prefix)


@pytest.mark.parametrize("zone", ["Nowhere/Zone", "Europe/Paris ", "", "../etc/localtime"])
def test_a_default_time_zone_that_is_not_one_is_refused_not_read_as_utc(monkeypatch, zone):
    monkeypatch.setenv("ORCH_DEFAULT_TIMEZONE", zone)
    with pytest.raises(ValidationError, match="is not a time zone name like UTC or Europe/Paris"):
        Settings()


def test_a_default_time_zone_by_its_name_is_kept(monkeypatch):
    monkeypatch.setenv("ORCH_DEFAULT_TIMEZONE", "Europe/Paris")
    assert Settings().policy().default_timezone == "Europe/Paris"


def test_the_cli_names_a_bad_default_time_zone_in_one_line(tmp_path):
    (tmp_path / "history.jsonl").write_text("")
    command = [sys.executable, "-m", "orchestrator", "replay", str(tmp_path / "history.jsonl"), "-j", str(tmp_path)]
    env = {**os.environ, "ORCH_DEFAULT_TIMEZONE": "Nowhere/Zone"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False, env=env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "orchestrator: error: bad setting default_timezone: "
        "'Nowhere/Zone' is not a time zone name like UTC or Europe/Paris"
    ]


@pytest.mark.parametrize(
    "servers", ["127.0.0.1:9092", "kafka", "a:9092, b:9093", "[::1]:9092", "broker-1.example.com:19092"]
)
def test_kafka_servers_as_host_and_port_are_taken(monkeypatch, servers):
    monkeypatch.setenv("ORCH_KAFKA_BOOTSTRAP", servers)
    assert Settings().kafka_bootstrap == servers


@pytest.mark.parametrize(
    ("servers", "named"),
    [
        ("notahost:xx", "notahost:xx"),
        ("", ""),
        ("a:b:c", "a:b:c"),
        ("h:99999", "h:99999"),
        ("h:0", "h:0"),
        ("a:9092,", ""),
        ("a b:9092", "a b:9092"),
    ],
)
def test_kafka_servers_the_clients_could_not_read_are_refused_at_start_by_name(monkeypatch, servers, named):
    """The Kafka clients would read them only when connecting: a traceback, or a wait for the
    connect timeout with no server to connect to."""
    monkeypatch.setenv("ORCH_KAFKA_BOOTSTRAP", servers)
    with pytest.raises(ValidationError, match=f"{re.escape(repr(named))}: Kafka's servers are host:port"):
        Settings()


@pytest.mark.parametrize(
    ("servers", "named"),
    [("user:s3cret@kafka:9092", "user:***@kafka:9092"), ("SASL_SSL://u:s3cret@k:9092", "SASL_SSL://u:***@k:9092")],
)
def test_a_refused_kafka_server_is_named_without_its_password(monkeypatch, servers, named):
    monkeypatch.setenv("ORCH_KAFKA_BOOTSTRAP", servers)
    with pytest.raises(ValidationError, match=f"{re.escape(repr(named))}: Kafka's servers are host:port") as refused:
        Settings()
    assert "s3cret" not in refused.value.errors()[0]["msg"]  # what the CLI says
