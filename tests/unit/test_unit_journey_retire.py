"""Retiring, reopening and removing journeys: the catalogue, the topic records a worker applies, and what
``orchestrator journeys list`` and ``remove`` say about them.

The catalogue topic is compacted, so a record's meaning may not depend on what came before
it: the catalogue is the state of the topic's keys (``id:version`` -> YAML, ``id:retired``
-> marker), and compaction, which keeps the last record of each key, must not change it.
"""

from __future__ import annotations

import itertools
import logging
from textwrap import dedent

import pytest
import stories

from agents.journeys import _apply_published
from orchestrator.cli.journeys import _version_number, _versions_on_topic, marker_time, removal_note
from orchestrator.core.decide import Decision
from orchestrator.errors import CliError
from orchestrator.journeys.catalogue import BadRecord, Catalogue, parse_key, record_key
from orchestrator.journeys.engine import UNSEEN, Engine, JourneyRun, Outcome
from orchestrator.journeys.loader import Compiled, InvalidJourney, compile_text

DAY = 86400.0
MARKER = b'{"retired_at": "2027-01-15T08:00:00+00:00"}'


def text(version: int, id: str = "j") -> str:
    return dedent(
        f"""\
        id: {id}
        version: {version}
        trigger: {{event: signup}}
        steps:
          - wait: 1d
          - action: {{channel: email, action: hello_v{version}}}
        """
    )


def journey(version: int, id: str = "j") -> Compiled:
    return compile_text(text(version, id), f"{id}.yaml")


def record(key: str, value: str | bytes | None) -> tuple[bytes, bytes | None]:
    return key.encode(), value.encode() if isinstance(value, str) else value


def applied(*records: tuple[bytes | None, bytes | None]) -> Catalogue:
    catalogue = Catalogue()
    for key, value in records:
        _apply_published(catalogue, key, value)
    return catalogue


def summary(catalogue: Catalogue) -> tuple[dict[str, list[int]], set[str], list[tuple[str, int]]]:
    """What a catalogue knows: its versions, which journeys are retired, which versions take newcomers."""
    versions = {jid: sorted(by_version) for jid, by_version in catalogue.versions.items()}
    return versions, set(catalogue.retired), [(j.id, j.version) for j in catalogue.active()]


def actions(decision: Decision) -> list[str]:
    return [c.action for c in decision.commands]


def entries(decision: Decision) -> list[tuple[str, int]]:
    return [(o.journey, o.version) for o in decision.outcomes if o.kind == "enter"]


# --- keys ---------------------------------------------------------------------------------------------


def test_keys_name_a_version_or_the_retirement_marker() -> None:
    assert record_key("cart_abandoned", 3) == "cart_abandoned:3"
    assert record_key("cart_abandoned") == "cart_abandoned:retired"
    assert parse_key("cart_abandoned:3") == ("cart_abandoned", 3)
    assert parse_key("cart_abandoned:retired") == ("cart_abandoned", None)


@pytest.mark.parametrize("key", ["", "j", ":1", "j:", "j:v1", "j:1.5", "j:-1", "j:RETIRED", "j:\u0661"])
def test_any_other_key_has_no_meaning(key: str) -> None:
    assert parse_key(key) is None


# --- the catalogue ------------------------------------------------------------------------------------


def test_removing_the_newest_version_sends_newcomers_to_the_one_before() -> None:
    catalogue = Catalogue.of([journey(1), journey(2)])

    assert catalogue.remove("j", 2) is True

    assert [(j.id, j.version) for j in catalogue.active()] == [("j", 1)]
    assert [j.version for j in catalogue.triggered_by("signup")] == [1]
    assert catalogue.get("j", 2) is None


def test_removing_the_last_version_forgets_the_journey_and_an_unknown_one_is_no_change() -> None:
    catalogue = Catalogue.of([journey(1)])

    assert catalogue.remove("j", 1) is True
    assert catalogue.remove("j", 1) is False
    assert catalogue.remove("nobody", 1) is False

    assert catalogue.versions == {} and len(catalogue) == 0
    assert catalogue.triggered_by("signup") == ()


def test_a_retired_journey_keeps_its_versions_and_reopens_into_its_newest() -> None:
    catalogue = Catalogue.of([journey(1), journey(2)])

    catalogue.retire("j")
    assert catalogue.active() == [] and catalogue.triggered_by("signup") == ()
    assert sorted(catalogue.versions["j"]) == [1, 2]

    catalogue.reopen("j")
    assert [j.version for j in catalogue.triggered_by("signup")] == [2]


def test_a_version_added_from_the_topic_does_not_reopen_but_one_added_by_hand_does() -> None:
    catalogue = Catalogue.of([journey(1)])
    catalogue.retire("j")

    catalogue.add(journey(2), reopen=False)
    assert catalogue.active() == []

    catalogue.add(journey(3))
    assert [j.version for j in catalogue.active()] == [3]


def test_apply_refuses_a_version_whose_yaml_is_another_journey_or_version() -> None:
    catalogue = Catalogue()

    with pytest.raises(BadRecord, match="the journey under j:2 is j:1"):
        catalogue.apply("j:2", text(1))
    with pytest.raises(BadRecord, match="the journey under k:1 is j:1"):
        catalogue.apply("k:1", text(1))
    with pytest.raises(BadRecord, match="not 'j'"):
        catalogue.apply("j", text(1))
    with pytest.raises(InvalidJourney):
        catalogue.apply("j:1", "id: j\nversion: 1\n")

    assert catalogue.versions == {}


# --- records on the topic, applied by a worker --------------------------------------------------------


def test_a_marker_retires_and_its_tombstone_reopens() -> None:
    catalogue = applied(record("j:1", text(1)), record("j:retired", MARKER))
    assert summary(catalogue) == ({"j": [1]}, {"j"}, [])

    _apply_published(catalogue, b"j:retired", None)

    assert summary(catalogue) == ({"j": [1]}, set(), [("j", 1)])


def test_a_version_tombstone_removes_that_version_only_and_never_retires() -> None:
    catalogue = applied(record("j:1", text(1)), record("j:2", text(2)), record("k:1", text(1, "k")))

    _apply_published(catalogue, b"j:2", None)

    assert summary(catalogue) == ({"j": [1], "k": [1]}, set(), [("j", 1), ("k", 1)])


def test_a_new_version_on_the_topic_alone_does_not_reopen_a_retired_journey() -> None:
    """Publish writes the marker's tombstone first; a version written by hand after the marker
    leaves the journey retired, as it would be once compaction had run."""
    catalogue = applied(record("j:1", text(1)), record("j:retired", MARKER), record("j:2", text(2)))

    assert summary(catalogue) == ({"j": [1, 2]}, {"j"}, [])


def test_what_publish_writes_to_reopen_with_a_new_version() -> None:
    catalogue = applied(record("j:1", text(1)), record("j:retired", MARKER))

    _apply_published(catalogue, b"j:retired", None)
    _apply_published(catalogue, b"j:2", text(2).encode())

    assert summary(catalogue) == ({"j": [1, 2]}, set(), [("j", 2)])


HISTORY = [
    record("j:1", text(1)),
    record("k:1", text(1, "k")),
    record("j:retired", MARKER),
    record("j:2", text(2)),
    record("k:2", text(2, "k")),
    record("k:2", None),
    record("j:retired", None),
    record("k:retired", MARKER),
    record("j:retired", MARKER),
    record("j:1", None),
]


@pytest.mark.parametrize("end", range(1, len(HISTORY) + 1))
def test_compaction_never_changes_what_the_topic_means(end: int) -> None:
    """A worker that read every record agrees with one that starts after compaction kept only
    the last record of each key and dropped the tombstones."""
    history = HISTORY[:end]
    last = {key: offset for offset, (key, _) in enumerate(history)}
    compacted = [(key, value) for offset, (key, value) in enumerate(history) if last[key] == offset and value]

    assert summary(applied(*history)) == summary(applied(*compacted))


def test_the_last_records_of_the_keys_mean_the_same_in_any_order() -> None:
    last = [record("j:1", text(1)), record("j:2", text(2)), record("j:retired", MARKER), record("k:1", text(1, "k"))]
    meanings = [summary(applied(*order)) for order in itertools.permutations(last)]

    assert all(meaning == ({"j": [1, 2], "k": [1]}, {"j"}, [("k", 1)]) for meaning in meanings)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (None, b"id: j"),
        (b"", None),
        (b"j", text(1).encode()),
        (b"j:v2", text(2).encode()),
        (b"j:2:extra", None),
        (b"\xff\xfe:1", text(1).encode()),
        (b"j:2", b"\xff\xfe not utf-8"),
        (b"j:2", text(3).encode()),
    ],
)
def test_a_record_that_means_nothing_is_logged_and_changes_nothing(
    key: bytes | None, value: bytes | None, caplog: pytest.LogCaptureFixture
) -> None:
    catalogue = applied(record("j:1", text(1)))

    with caplog.at_level(logging.ERROR, logger="agents.journeys"):
        _apply_published(catalogue, key, value)

    assert summary(catalogue) == ({"j": [1]}, set(), [("j", 1)])
    assert [r.message for r in caplog.records if r.message.startswith("ignoring catalogue record")], caplog.text


def test_a_tombstone_for_a_version_never_seen_is_harmless() -> None:
    catalogue = applied(record("j:1", text(1)))

    _apply_published(catalogue, b"j:7", None)
    _apply_published(catalogue, b"nobody:1", None)

    assert summary(catalogue) == ({"j": [1]}, set(), [("j", 1)])


def future(version: int, id: str = "j") -> str:
    """A version as a newer release may publish it: with a kind of step this release does not know."""
    return text(version, id) + "  - poll: {channel: app, question: how was it}\n"


@pytest.mark.parametrize("yaml", [future(2), "steps: [unclosed", text(2).replace("wait: 1d", "wait: 11y")])
def test_a_version_this_release_cannot_load_is_kept_as_unloadable_and_takes_nobody_new(
    yaml: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Not gone: newcomers do not fall back to the version before, as if it had been removed."""
    with caplog.at_level(logging.ERROR, logger="agents.journeys"):
        catalogue = applied(record("j:1", text(1)), record("j:2", yaml))

    assert summary(catalogue) == ({"j": [1]}, set(), [])
    assert list(catalogue.unloadable) == ["j"] and list(catalogue.unloadable["j"]) == [2]
    assert catalogue.held("j", 2) and not catalogue.held("j", 1)
    assert [r.message for r in caplog.records if r.message.startswith("cannot load published journey j:2")]


def test_an_older_version_that_cannot_be_loaded_leaves_newcomers_on_the_newest() -> None:
    catalogue = applied(record("j:1", future(1)), record("j:2", text(2)))

    assert summary(catalogue) == ({"j": [2]}, set(), [("j", 2)])


def test_a_tombstone_or_a_version_loaded_after_all_ends_unloadable() -> None:
    catalogue = applied(record("j:1", text(1)), record("j:2", future(2)), record("j:3", future(3)))

    _apply_published(catalogue, b"j:3", None)
    catalogue.add(journey(2), reopen=False)  # as a release that can load it would

    assert catalogue.unloadable == {}
    assert summary(catalogue) == ({"j": [1, 2]}, set(), [("j", 2)])


def test_customers_on_a_version_this_worker_cannot_load_wait_untouched_for_a_worker_that_can() -> None:
    """A rolling upgrade: v2 is published with a feature the old release lacks. A customer who
    entered it on a new worker is not sent out of the journey by an old one, and goes on
    (their wait fires late, at its own time) once a new worker has them again."""
    newer = Engine(applied(record("j:1", text(1)), record("j:2", text(2))))
    older = Engine(applied(record("j:1", text(1)), record("j:2", future(2))))
    customer = stories.Customer(newer, customer_id="on_v2")
    assert entries(customer.does("signup")) == [("j", 2)]
    waiting = customer.state.journeys["j"] if customer.state else {}

    customer.engine = older
    for decision in (customer.wakes(DAY), customer.does("purchase", at=DAY + 60), customer.wakes(DAY + 120)):
        assert (decision.commands, decision.outcomes) == ([], [])
    assert customer.state is not None and customer.state.journeys == {"j": waiting | {UNSEEN: stories.T0 + DAY + 60}}
    assert stories.Customer(older, customer_id="new").does("signup", at=60).outcomes == []

    customer.engine = newer
    decision = customer.wakes(DAY + 180)
    assert [(c.action, c.issued_at) for c in decision.commands] == [("hello_v2", stories.T0 + DAY)]


def entered_on_v2_with_a_goal() -> tuple[Engine, Engine, stories.Customer]:
    """Engines of a release that can load v2 and of one that cannot, and a customer inside v2."""
    newer = Engine(applied(record("j:1", with_goal(text(1))), record("j:2", with_goal(text(2)))))
    older = Engine(applied(record("j:1", with_goal(text(1))), record("j:2", with_goal(future(2)))))
    customer = stories.Customer(newer, customer_id="on_v2")
    customer.does("signup")
    return newer, older, customer


def with_goal(yaml: str) -> str:
    return yaml.replace(
        "trigger: {event: signup}\n",
        "trigger: {event: signup}\ngoal: {event: purchase}\nexit_on: [{event: unsubscribe}]\n",
    )


@pytest.mark.parametrize(
    ("ending", "outcomes"),
    [("purchase", [("convert", ""), ("exit", "goal")]), ("unsubscribe", [("exit", "exit_on:unsubscribe")])],
)
def test_a_goal_or_exit_a_worker_could_not_see_ends_the_journey_on_the_first_worker_that_can(
    ending: str, outcomes: list[tuple[str, str]]
) -> None:
    """Not a late nudge after the purchase: the goal that came while old workers had the
    customer is found in their recent events before the wait that fell due fires."""
    newer, older, customer = entered_on_v2_with_a_goal()
    customer.engine = older
    customer.does("page_view", at=3600)
    assert customer.does(ending, at=7200).outcomes == []

    customer.engine = newer
    decision = customer.wakes(DAY + 60)

    assert decision.commands == []
    assert [(o.kind, o.reason) for o in decision.outcomes] == outcomes
    assert customer.state is not None and customer.state.journeys == {}
    assert customer.state.journey_log["j"]["last_exit"] == stories.T0 + 7200


def test_a_goal_merged_in_where_the_version_could_not_be_loaded_is_looked_at_later() -> None:
    newer, older, customer = entered_on_v2_with_a_goal()
    assert customer.state is not None
    bought = {"event_id": "other-1", "type": "purchase", "channel": "store", "ts": stories.T0 + 7200}
    customer.state.recent.append(bought)  # as merge_states joins the recent lists

    older.end_on_events_elsewhere(customer.state, {"j": [bought]}, JourneyRun())
    assert customer.state.journeys["j"][UNSEEN] == stories.T0 + 7200

    customer.engine = newer
    assert [(o.kind, o.reason) for o in customer.wakes(DAY).outcomes] == [("convert", ""), ("exit", "goal")]


def test_events_a_worker_could_not_see_that_end_nothing_leave_the_journey_going() -> None:
    newer, older, customer = entered_on_v2_with_a_goal()
    customer.engine = older
    customer.does("page_view", at=3600)

    customer.engine = newer
    assert actions(customer.wakes(DAY + 60)) == ["hello_v2"]
    assert customer.does("purchase", at=DAY + 120).outcomes == []  # the journey is over: it sent its action


def test_removing_a_version_no_worker_could_load_lets_its_customers_leave_and_newcomers_enter_the_one_left() -> None:
    newer = Engine(applied(record("j:1", text(1)), record("j:2", text(2))))
    catalogue = applied(record("j:1", text(1)), record("j:2", future(2)))
    customer = stories.Customer(newer, customer_id="on_v2")
    customer.does("signup")
    customer.engine = Engine(catalogue)

    _apply_published(catalogue, b"j:2", None)

    assert customer.wakes(DAY).outcomes == [Outcome("exit", "j", 2, "version_removed")]
    assert entries(stories.Customer(customer.engine, customer_id="new").does("signup", at=60)) == [("j", 1)]


# --- customers ----------------------------------------------------------------------------------------


def test_customers_inside_a_retired_journey_finish_and_nobody_new_enters() -> None:
    catalogue = applied(record("j:1", text(1)))
    engine = Engine(catalogue)
    inside = stories.Customer(engine, customer_id="inside")
    assert entries(inside.does("signup")) == [("j", 1)]

    _apply_published(catalogue, b"j:retired", MARKER)

    assert stories.Customer(engine, customer_id="new").does("signup", at=60).outcomes == []
    assert actions(inside.wakes(DAY)) == ["hello_v1"]


def test_reopened_journeys_take_newcomers_again() -> None:
    catalogue = applied(record("j:1", text(1)), record("j:retired", MARKER))
    engine = Engine(catalogue)
    assert stories.Customer(engine, customer_id="before").does("signup").outcomes == []

    _apply_published(catalogue, b"j:retired", None)

    assert entries(stories.Customer(engine, customer_id="after").does("signup")) == [("j", 1)]


def test_customers_on_a_removed_version_leave_it_and_newcomers_enter_the_one_left() -> None:
    catalogue = applied(record("j:1", text(1)), record("j:2", text(2)))
    engine = Engine(catalogue)
    on_v2 = stories.Customer(engine, customer_id="on_v2")
    assert entries(on_v2.does("signup")) == [("j", 2)]

    _apply_published(catalogue, b"j:2", None)

    decision = on_v2.wakes(DAY)
    assert decision.commands == []
    assert decision.outcomes == [Outcome("exit", "j", 2, "version_removed")]
    assert on_v2.state is not None and on_v2.state.journeys == {}
    assert entries(stories.Customer(engine, customer_id="new").does("signup", at=60)) == [("j", 1)]


@pytest.mark.parametrize("by", ["wake", "event"])
def test_a_removed_version_published_again_without_their_step_lets_its_customers_leave_not_fail(by: str) -> None:
    """Other content under a removed number: their step is not in it; they leave as if removed."""
    catalogue = applied(record("j:1", text(1)))
    engine = Engine(catalogue)
    inside = stories.Customer(engine, customer_id="inside")
    assert entries(inside.does("signup")) == [("j", 1)]
    _apply_published(catalogue, b"j:1", None)
    _apply_published(catalogue, b"j:1", text(1).replace("- wait: 1d", "- id: other_wait\n    wait: 2d").encode())

    decision = inside.wakes(DAY) if by == "wake" else inside.does("page_view", at=60)
    assert decision.commands == []
    assert Outcome("exit", "j", 1, "version_removed") in decision.outcomes
    assert inside.state is not None and "j" not in inside.state.journeys


def test_any_value_under_the_marker_key_retires() -> None:
    """``retired_at`` is for people reading the topic; a worker never reads the marker's value."""
    catalogue = applied(record("j:1", text(1)), record("j:retired", b"anything at all"))

    assert catalogue.retired == {"j"}


# --- what the command line says: list's retirement time, remove's one line ---------------------------

LATER = "customers inside v{v} leave the journey at their next event or timer wake (reason version_removed)"


def two_waits(version: int, otherwise: str | None = None) -> Compiled:
    """``j`` at ``version`` with two waits; given ``otherwise``, a rule that takes customers of v1
    from its second wait to its own, and ends or leaves them at any other step as that says."""
    rule = f"migrate: {{from: [1], steps: {{second: second}}, otherwise: {otherwise}}}\n" if otherwise else ""
    steps = "steps:\n  - {id: first, wait: 1d}\n  - {id: second, wait: 1d}\n  - action: {channel: email, action: hi}\n"
    return compile_text(f"id: j\nversion: {version}\ntrigger: {{event: signup}}\n{rule}{steps}", f"j.v{version}.yaml")


@pytest.mark.parametrize(
    ("marker", "shown"),
    [
        (MARKER.decode(), "2027-01-15T08:00:00+00:00"),
        ('{"retired_at": "2027-01-15T08:00:00Z", "by": "ops"}', "2027-01-15T08:00:00Z"),
        (None, None),
        ("", None),
        ("anything at all", None),
        ("null", None),
        ("{}", None),
        ('["retired_at"]', None),
        ('"2027-01-15T08:00:00+00:00"', None),
        ('{"retired_at": null}', None),
        ('{"retired_at": 1800000000}', None),
        ('{"retired_at": "last tuesday"}', None),
    ],
)
def test_list_shows_the_time_a_marker_gives_and_nothing_for_one_without(marker: str | None, shown: str | None) -> None:
    """Workers never read the marker's value, so an old or hand-written one may hold anything."""
    assert marker_time(marker) == shown


def test_removing_the_newest_version_says_whom_newcomers_enter_now_and_that_its_customers_leave() -> None:
    catalogue = Catalogue.of([journey(1), journey(2), journey(3)])

    assert removal_note(catalogue, "j", 3) == f"removed j v3, newcomers enter v2; {LATER.format(v=3)}"
    assert removal_note(catalogue, "j", 1) == f"removed j v1, newcomers enter v3; {LATER.format(v=1)}"


def test_removing_the_last_version_says_the_journey_is_gone() -> None:
    catalogue = Catalogue.of([journey(4)])

    assert removal_note(catalogue, "j", 4) == (
        f"removed j v4, its last version: the journey is gone entirely, no newcomers; {LATER.format(v=4)}"
    )


def test_removing_a_version_of_a_retired_journey_says_it_stays_retired() -> None:
    catalogue = Catalogue.of([journey(1), journey(2), journey(3)])
    catalogue.retire("j")

    assert removal_note(catalogue, "j", 2).startswith("removed j v2, still retired, no newcomers (v1, v3 left); ")


@pytest.mark.parametrize(("otherwise", "reason"), [("stay", "version_removed"), ("exit", "migration")])
def test_what_remove_says_of_the_customers_inside_is_what_the_engine_does(otherwise: str, reason: str) -> None:
    """Before v2 came, one customer reached v1's first wait and one its second; v2's rule maps only the
    second. Removing v1 moves that one, and the other leaves with the reason the line names."""
    catalogue = Catalogue.of([two_waits(1)])
    engine = Engine(catalogue)
    first, second = stories.Customer(engine, customer_id="first"), stories.Customer(engine, customer_id="second")
    assert entries(second.does("signup")) == entries(first.does("signup", at=DAY)) == [("j", 1)]
    assert second.wakes(DAY).outcomes == [] and second.state is not None
    assert second.state.journeys["j"]["step"] == "second"
    catalogue.add(two_waits(2, otherwise))

    note = removal_note(catalogue, "j", 1)
    catalogue.remove("j", 1)

    assert note == (
        "removed j v1, newcomers enter v2; customers inside v1 move at their next event or timer wake where a "
        f"migration rule (v2) maps their step; the others leave (reason {reason})"
    )
    assert [(o.kind, o.version) for o in second.does("page_view", at=DAY + 60).outcomes] == [("migrate", 2)]
    assert first.does("page_view", at=DAY + 60).outcomes == [Outcome("exit", "j", 1, reason)]


@pytest.mark.parametrize("given", ["2", "17", "007"])
def test_a_version_on_the_command_line_is_a_number(given: str) -> None:
    assert _version_number(given) == int(given)


@pytest.mark.parametrize("given", ["v2", "", "1.5", "-1", "+2", " 2", "two", "\u0662"])
def test_anything_else_is_one_line_that_says_so(given: str) -> None:
    with pytest.raises(CliError, match=r"^VERSION is a whole number as in 'list' \(2 for v2\), not "):
        _version_number(given)


def test_remove_finds_every_record_of_the_version_also_ones_workers_skip() -> None:
    """Unreadable YAML is skipped by workers and hidden from ``list``: ``remove`` is how to be rid of it."""
    records = {"j:1": text(1), "j:02": text(2), "j:3": "steps: [unclosed", "j:retired": "{}", "k:1": "", "j": ""}

    assert _versions_on_topic(records, "j") == {"j:1": 1, "j:02": 2, "j:3": 3}
    assert _versions_on_topic(records, "nobody") == {}
