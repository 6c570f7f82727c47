"""Text from a customer or a channel, made safe to print on a terminal one line per record."""

from __future__ import annotations

import re

# What a terminal acts on instead of showing: C0 and C1 controls (a newline, ESC that starts a
# colour or cursor sequence, NEL), DEL, the Unicode line and paragraph separators, and the
# bidirectional overrides and isolates that reorder what follows them on the line.
UNSHOWABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` with each character a terminal would act on written as Python writes it in a
    string (``\\n``, ``\\x1b``, ``\\u202e``): a value can then neither fake a line of its own
    nor send the terminal a sequence. Everything else, a backslash too, is left as it is."""
    return UNSHOWABLE.sub(lambda found: repr(found.group())[1:-1], text)
