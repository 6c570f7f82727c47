"""``orchestrator tail``'s lines: columns that line up for the ids the simulator makes, and the
README's sample exactly as tail prints it."""

from __future__ import annotations

import io
import re
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from rich.text import Text

from orchestrator.cli.tail import Columns, terminal
from orchestrator.simulator import Simulator

README = Path(__file__).parents[2] / "README.md"
REASON = "searched for 'tent' on search and has not bought it: remarketing ad with 10% off"


def command(customer: str, action: str = "remarketing_ad", channel: str = "ads", **more: Any) -> dict[str, Any]:
    return {"issued_at": 1_790_064_000.0, "channel": channel, "action": action, "customer_id": customer} | {
        "reason": REASON,
        **more,
    }


def shown(columns: Columns, doc: dict[str, Any]) -> str:
    """The line as the terminal shows it: markup gone, colours aside."""
    return Text.from_markup(columns.line(doc)).plain


def test_the_reason_lines_up_for_every_customer_the_simulator_makes() -> None:
    sim = Simulator(customers=12_000, seed=3)
    ids = {out.event["customer_id"] for _ in range(300) for out in sim.records(1_790_064_000.0) if out.event}
    assert max(len(i) for i in ids) >= 15
    columns = Columns()
    starts = {shown(columns, command(customer)).index(REASON) for customer in sorted(ids)}
    assert len(starts) == 1


def test_a_wider_value_widens_its_column_for_the_lines_after_it() -> None:
    columns = Columns()
    long_id = "customer-with-a-long-id-0001"
    first = shown(columns, command(long_id))
    after = shown(columns, command("c-1", action="upsell", channel="email"))
    assert first.index(REASON) == after.index(REASON)
    assert first.split(REASON)[0].endswith(f"{long_id} ")


def test_an_id_wider_than_the_limit_overflows_its_own_line_only() -> None:
    columns = Columns()
    before = shown(columns, command("c-1")).index(REASON)
    huge = shown(columns, command("x" * 128))
    after = shown(columns, command("c-2")).index(REASON)
    assert "x" * 128 + " " + REASON in huge
    assert after - before == Columns.MOST - Columns.START["customer_id"]


def test_markup_in_a_value_is_shown_as_written_and_padded_as_shown() -> None:
    columns = Columns()
    line = shown(columns, command("[bold]c-1", reason="[red]not markup"))
    plain = shown(columns, command("c-2", reason="x"))
    assert "[bold]c-1" in line
    assert line.endswith("[red]not markup")
    assert line.index("[red]") == plain.rindex("x")


def test_the_readme_sample_is_what_tail_prints() -> None:
    sample = README.read_text().split("waits:\n\n```\n", 1)[1].split("\n```", 1)[0]  # what the demo shows
    lines = sample.splitlines()
    assert len(lines) >= 3
    columns = Columns()
    for line in lines:
        when, channel, action, customer, reason = re.fullmatch(r"(\S+)  (\S+) +(\S+) +(\S+) +(.+)", line).groups()
        issued_at = datetime.combine(date.today(), time.fromisoformat(when)).timestamp()
        doc = {"issued_at": issued_at, "channel": channel, "action": action, "customer_id": customer, "reason": reason}
        assert shown(columns, doc) == line


def test_a_reason_is_printed_as_sent_with_no_emoji_made_of_it() -> None:
    """ "query:tent: stop" is what a remarketing stop's reason says; rich made it "query⛺ stop"."""
    out = io.StringIO()
    reason = "bought after remarketing for product:sku-1, query:tent: stop those ads; shoes :fire:"
    terminal(out).print(Columns().line(command("c-1", action="remarketing_stop", reason=reason)))
    assert out.getvalue().rstrip("\n").endswith(reason)


def test_control_characters_in_a_value_are_shown_escaped_so_a_command_is_one_line() -> None:
    """A customer id "c-1\\nFAKE" made one command print as two lines; ESC in a query reached the terminal."""
    out = io.StringIO()
    columns = Columns()
    doc = command(
        "c-1234\n\n\nFAKE2", action="up\x07sell", channel="ads\r", reason="query:\x1b[2J\x1b[31mtent \u202eevil\x85"
    )
    terminal(out).print(columns.line(doc))
    after = shown(columns, command("c-2"))

    printed = out.getvalue()
    assert printed.count("\n") == 1 and printed.endswith("\n")
    assert "\x1b" not in printed and "\x85" not in printed and "\u202e" not in printed
    assert "ads\\r" in printed and "up\\x07sell" in printed
    assert "c-1234\\n\\n\\nFAKE2 " in printed  # wider than the column once escaped
    assert printed.rstrip("\n").endswith("query:\\x1b[2J\\x1b[31mtent \\u202eevil\\x85")
    assert printed.index("query:") == after.index(REASON), "the columns are as wide as the escapes shown"
