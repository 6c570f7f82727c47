"""Topic names: one prefix applied everywhere, channels found from names."""

from __future__ import annotations

import re

import pytest

from orchestrator.topics import ACTIONS, EVENTS, TopicNames


def test_without_a_prefix_topics_have_their_plain_names():
    names = TopicNames()
    assert names.events("web") == "events.web"
    assert names.actions("ads") == "actions.ads"
    assert names.dlq == "orchestrator.dlq"
    assert names.customer_events == "orchestrator.customer-events"


def test_a_prefix_is_applied_to_every_topic():
    names = TopicNames("p.")
    assert names.events("web") == "p.events.web"
    assert names.actions("ads") == "p.actions.ads"
    assert names.dlq == "p.orchestrator.dlq"
    assert names.customer_events == "p.orchestrator.customer-events"


@pytest.mark.parametrize(
    ("prefix", "topic", "channel"),
    [
        ("", "events.web", "web"),
        ("", "events.new-channel", "new-channel"),
        ("p.", "p.events.web", "web"),
        ("", "events.", None),
        ("", "actions.web", None),
        ("p.", "events.web", None),
        ("", "p.events.web", None),
    ],
)
def test_the_channel_is_read_from_an_events_topic_name(prefix, topic, channel):
    assert TopicNames(prefix).channel_of(topic) == channel


@pytest.mark.parametrize(
    ("prefix", "name", "kind", "topic"),
    [
        ("", "ads", ACTIONS, "actions.ads"),
        ("", "web", EVENTS, "events.web"),
        ("p.", "ads", ACTIONS, "p.actions.ads"),
        ("", "actions.ads", ACTIONS, "actions.ads"),
        ("p.", "p.actions.ads", ACTIONS, "p.actions.ads"),
        ("", "orchestrator.dlq", ACTIONS, "orchestrator.dlq"),
    ],
)
def test_resolve_accepts_a_bare_channel_or_a_full_topic_name(prefix, name, kind, topic):
    assert TopicNames(prefix).resolve(name, kind) == topic


def test_resolve_defaults_to_events_topics():
    assert TopicNames().resolve("web") == "events.web"


@pytest.mark.parametrize(
    ("topic", "matches"),
    [
        ("events.web", True),
        ("events.new-channel", True),
        ("events.app_2", True),
        ("actions.web", False),
        ("xevents.web", False),
        ("events.web.extra", False),
        ("events.Web", False),
        ("events.", False),
        ("eventsXweb", False),
    ],
)
def test_the_events_pattern_matches_every_events_topic_and_nothing_else(topic, matches):
    assert bool(re.match(TopicNames().events_pattern, topic)) is matches


def test_the_events_pattern_respects_the_prefix():
    pattern = TopicNames("p.").events_pattern
    assert re.match(pattern, "p.events.web")
    assert not re.match(pattern, "events.web")
    assert not re.match(pattern, "pXevents.web")


def test_the_actions_pattern_matches_only_actions_topics():
    pattern = TopicNames().actions_pattern
    assert re.match(pattern, "actions.ads")
    assert not re.match(pattern, "events.ads")


@pytest.mark.parametrize(
    ("prefix", "topic", "inbound"),
    [
        ("", "events.web", True),
        ("", "events.new-channel", True),
        ("p.", "p.events.web", True),
        ("", "actions.ads", False),
        ("", "orchestrator.dlq", False),
        ("", "events.Bad Topic!", False),
        ("", "events.", False),
        ("p.", "events.web", False),
        ("", "events.web\n", False),
    ],
)
def test_only_topics_the_workers_read_events_from_are_events_topics(prefix, topic, inbound):
    assert TopicNames(prefix).is_events_topic(topic) is inbound
