"""The wire contract: events in, commands out.

Channel teams publish :class:`ChannelEvent` records to ``events.<channel>`` and
consume :class:`ActionCommand` records from ``actions.<channel>``. Both travel as
msgpack by default; JSON objects are accepted on input. ``schemas/json/`` holds
the JSON Schema files generated from these models for teams in other languages.
"""

from schemas.codec import DecodeError, decode_payload, encode_payload
from schemas.commands import ActionCommand
from schemas.events import ChannelEvent

__all__ = [
    "ActionCommand",
    "ChannelEvent",
    "DecodeError",
    "decode_payload",
    "encode_payload",
]
