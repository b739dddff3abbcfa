"""Slots on the node stream: the untrusted sender's placeholder and slot-keyed bytes.

Slots named inside node messages are never trusted: the coordinator fills in
the sender from the stream's identity (``sender=UNKNOWN_SLOT`` here).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from federation.errors import ProtocolError
from federation.v1 import node_pb2

__all__ = ["UNKNOWN_SLOT", "slot_bytes", "slot_map"]

UNKNOWN_SLOT = -1


def slot_bytes(items: Mapping[int, bytes]) -> list[node_pb2.SlotBytes]:
    """Slot-keyed bytes -> wire, in slot order."""
    return [node_pb2.SlotBytes(slot=k, data=v) for k, v in sorted(items.items())]


def slot_map(items: Iterable[node_pb2.SlotBytes], what: str) -> dict[int, bytes]:
    """Wire -> slot-keyed bytes; ProtocolError if ``what`` names a slot twice."""
    out: dict[int, bytes] = {}
    for item in items:
        if item.slot in out:
            raise ProtocolError(f"{what} names slot {item.slot} twice")
        out[int(item.slot)] = bytes(item.data)
    return out
