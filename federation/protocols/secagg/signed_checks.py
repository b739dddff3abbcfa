"""A node's checks of its peers' signatures in signed (actively secure) SecAgg+ runs.

:func:`check_key_signature` accepts a neighbour's keys only under that neighbour's
valid signature; :func:`check_consistency` lets a node unmask only for the survivor
set it signed itself, countersigned by at least ``threshold`` of its group. What is
signed is in :mod:`federation.protocols.secagg.binding`.
"""

from __future__ import annotations

from collections.abc import Callable

from federation.errors import ProtocolError
from federation.protocols.secagg.binding import (
    MAX_SIGNATURE_BYTES,
    keys_message,
    survivors_message,
)
from federation.protocols.secagg.messages import (
    KeyRoster,
    PublicKeys,
    SecAggParams,
    UnmaskRequest,
)

__all__ = ["check_consistency", "check_key_signature"]


def check_key_signature(
    roster: KeyRoster,
    v: int,
    keys: PublicKeys,
    *,
    name: str,
    params: SecAggParams,
    verify: Callable[[int, bytes, bytes], bool] | None,
) -> None:
    """Refuse slot ``v``'s ``keys`` unless the roster carries that node's valid
    signature over them for this job and computation.

    Raises:
        ProtocolError: The signature is missing, malformed or does not verify (the
            message begins with ``name``, the checking node).
    """
    signature = roster.signatures.get(v) if isinstance(roster.signatures, dict) else None
    if (
        verify is None
        or not isinstance(signature, bytes)
        or not 0 < len(signature) <= MAX_SIGNATURE_BYTES
        or not verify(v, keys_message(params, v, keys), signature)
    ):
        raise ProtocolError(
            f"{name}: the keys of slot {v} do not carry that node's valid signature "
            "for this job and computation (substituted keys, a replay, or a different "
            "query); refusing"
        )


def check_consistency(
    request: UnmaskRequest,
    holders: set[int],
    survivors: set[int],
    dropped: set[int],
    *,
    name: str,
    params: SecAggParams,
    verify: Callable[[int, bytes, bytes], bool] | None,
    slot: int,
    signed: frozenset[int] | None,
) -> None:
    """Refuse to unmask unless the request matches the survivor set ``signed`` by the
    node in ``slot`` and at least ``threshold`` of its group (itself included) signed
    that same set.

    Raises:
        ProtocolError: The node signed no survivor set, the request lists other
            survivors or dropped slots, or too few valid signatures came with it.
    """
    if signed is None:
        raise ProtocolError(f"{name} never signed a survivor set; refusing to unmask")
    if survivors != holders & signed or dropped != holders - signed:
        raise ProtocolError(
            f"{name}: the unmask request does not match the survivor set it "
            "signed (the coordinator told different nodes different stories); refusing"
        )
    message = survivors_message(params, signed)
    signatures = request.signatures if isinstance(request.signatures, dict) else {}
    valid = {slot}
    for v, signature in signatures.items():
        if len(valid) >= params.threshold:
            break  # enough: each further check costs a signature verification
        if (
            verify is not None
            and v in holders
            and v != slot
            and isinstance(signature, bytes)
            and 0 < len(signature) <= MAX_SIGNATURE_BYTES
            and verify(v, message, signature)
        ):
            valid.add(v)
    if len(valid) < params.threshold:
        raise ProtocolError(
            f"{name}: only {len(valid)} of its group signed the survivor set it "
            f"signed, at least threshold={params.threshold} needed; refusing to unmask"
        )
