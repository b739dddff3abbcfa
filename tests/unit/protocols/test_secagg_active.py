"""The actively secure variant of SecAgg+ against a coordinator that lies (no I/O).

Each test plays a malicious coordinator between honest node state machines: it
substitutes keys, replays signatures from another job or round, runs another
query at one node, or tells nodes different survivor sets. Every attack must end
in a refusal before any node reveals a share, and an honest run must still sum
exactly.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from federation.crypto.signing import Ed25519Signer, verify_signature
from federation.errors import ProtocolError
from federation.protocols.secagg import (
    ConsistencyRequest,
    CoordinatorSecAgg,
    KeyRoster,
    NodeSecAgg,
    PublicKeys,
    SecAggParams,
    Stage,
    UnmaskRequest,
    make_params,
)

N, LENGTH = 5, 8


def _params(job: str = "job-1", fingerprint: str = "f" * 64) -> SecAggParams:
    return dataclasses.replace(make_params(job, N, LENGTH), signed=True, fingerprint=fingerprint)


class Federation:
    """Honest nodes with identity keys; the test drives the coordinator's side by hand."""

    def __init__(self, params: SecAggParams, fingerprints: dict[int, str] | None = None) -> None:
        self.signers = [Ed25519Signer.generate() for _ in range(N)]
        keys = [s.public_bytes for s in self.signers]

        def verify(slot: int, message: bytes, signature: bytes) -> bool:
            return verify_signature(keys[slot], message, signature)

        self.nodes = []
        for u in range(N):
            mine = dataclasses.replace(
                params, fingerprint=(fingerprints or {}).get(u, params.fingerprint)
            )
            self.nodes.append(NodeSecAgg(mine, u, sign=self.signers[u].sign, verify=verify))
        self.coordinator = CoordinatorSecAgg(params)
        self.inputs = [np.arange(LENGTH, dtype=np.uint64) * np.uint64(u + 1) for u in range(N)]

    def advertise(self) -> list[KeyRoster]:
        for node in self.nodes:
            self.coordinator.receive(node.advertise_keys())
        return self.coordinator.advance()  # type: ignore[return-value]

    def through_masking(self) -> list[ConsistencyRequest]:
        rosters = self.advertise()
        for roster in rosters:
            self.coordinator.receive(self.nodes[roster.recipient].share_keys(roster))
        deliveries = self.coordinator.advance()
        for d in deliveries:
            node = self.nodes[d.recipient]
            self.coordinator.receive(node.mask_input(d, self.inputs[d.recipient]))  # type: ignore[arg-type]
        return self.coordinator.advance()  # type: ignore[return-value]


def test_an_honest_signed_run_sums_exactly_with_a_late_dropout() -> None:
    fed = Federation(_params())
    requests = fed.through_masking()
    assert fed.coordinator.stage is Stage.CONSISTENCY
    for request in requests:
        if request.recipient != 4:  # slot 4 uploaded, then vanished before signing
            fed.coordinator.receive(fed.nodes[request.recipient].consistency(request))
    unmask = [r for r in fed.coordinator.advance() if isinstance(r, UnmaskRequest)]
    assert sorted(r.recipient for r in unmask) == [0, 1, 2, 3]
    for ask in unmask:
        fed.coordinator.receive(fed.nodes[ask.recipient].unmask(ask))
    fed.coordinator.advance()
    result = fed.coordinator.result()
    assert result.contributors == (0, 1, 2, 3, 4)  # slot 4's input is in the sum
    assert np.array_equal(result.vector, sum(fed.inputs, np.zeros(LENGTH, np.uint64)))


def test_substituted_keys_are_refused() -> None:
    fed = Federation(_params())
    rosters = fed.advertise()
    roster = rosters[0]
    attacker = NodeSecAgg(_params(), 1, sign=Ed25519Signer.generate().sign, verify=lambda *_: True)
    forged = attacker.advertise_keys()  # keys (and a signature) the coordinator controls
    keys = {**roster.keys, 1: forged.keys}
    signatures = {**roster.signatures, 1: forged.signature}
    with pytest.raises(ProtocolError, match="keys of slot 1 do not carry"):
        fed.nodes[0].share_keys(dataclasses.replace(roster, keys=keys, signatures=signatures))
    with pytest.raises(ProtocolError, match="keys of slot 2 do not carry"):
        fed.nodes[0].share_keys(dataclasses.replace(roster, signatures={1: roster.signatures[1]}))
    assert fed.nodes[0].stage is Stage.SHARE_KEYS  # nothing was shared


def test_signatures_from_another_job_are_refused() -> None:
    old = Federation(_params(job="job-0"))
    old_rosters = old.advertise()
    fed = Federation(_params(job="job-1"))
    fed.signers = old.signers  # the same identities take part in both jobs
    fed.advertise()
    # replay: the same nodes' key advertisements, signed for job-0, shown in job-1
    node = NodeSecAgg(
        _params(job="job-1"),
        0,
        sign=old.signers[0].sign,
        verify=lambda s, m, g: verify_signature(old.signers[s].public_bytes, m, g),
    )
    node.advertise_keys()
    replayed = dataclasses.replace(old_rosters[0], recipient=0)
    with pytest.raises(ProtocolError, match="do not carry"):
        node.share_keys(replayed)


def test_a_different_query_at_one_node_aborts_before_any_share_is_revealed() -> None:
    fed = Federation(_params(), fingerprints={2: "e" * 64})  # the coordinator lied to node 2
    rosters = fed.advertise()
    for roster in rosters:
        with pytest.raises(ProtocolError, match="do not carry"):
            fed.nodes[roster.recipient].share_keys(roster)


def test_a_round_signature_cannot_stand_in_for_another_round() -> None:
    fed = Federation(_params())
    requests = fed.through_masking()
    signatures = {r.recipient: fed.nodes[r.recipient].consistency(r).signature for r in requests}
    # the coordinator presents survivors signatures where key signatures belong
    node = Federation(_params()).nodes[0]
    node.advertise_keys()
    roster = KeyRoster(
        recipient=0,
        keys={v: PublicKeys(bytes([v + 1]) * 32, bytes([v + 9]) * 32) for v in range(1, N)},
        signatures={v: signatures[v] for v in range(1, N)},
    )
    with pytest.raises(ProtocolError, match="do not carry"):
        node.share_keys(roster)


def test_telling_nodes_different_survivor_sets_is_refused() -> None:
    fed = Federation(_params())
    requests = fed.through_masking()
    everyone = requests[0].survivors
    # node 0 is told slot 4 did not upload; the others are told it did
    lie = ConsistencyRequest(recipient=0, survivors=tuple(u for u in everyone if u != 4))
    lied_to = fed.nodes[0].consistency(lie)
    honest = {r.recipient: fed.nodes[r.recipient].consistency(r) for r in requests[1:]}
    # the coordinator asks node 0 for slot 4's key shares (as if it dropped) ...
    signatures = {0: lied_to.signature, **{u: m.signature for u, m in honest.items()}}
    request = UnmaskRequest(
        recipient=0, survivors=(0, 1, 2, 3), dropped=(4,), signatures=signatures
    )
    with pytest.raises(ProtocolError, match=r"only 1 of its group signed"):
        fed.nodes[0].unmask(request)
    # ... and another node for slot 4's self-mask share, under a survivor set it never signed
    request = UnmaskRequest(
        recipient=1, survivors=(0, 1, 2, 3), dropped=(4,), signatures=signatures
    )
    with pytest.raises(ProtocolError, match="does not match the survivor set it signed"):
        fed.nodes[1].unmask(request)


def test_overlapping_lists_and_missing_signatures_are_refused() -> None:
    fed = Federation(_params())
    requests = fed.through_masking()
    signed = {r.recipient: fed.nodes[r.recipient].consistency(r).signature for r in requests}
    both = UnmaskRequest(recipient=0, survivors=(0, 1, 2, 3, 4), dropped=(4,), signatures=signed)
    with pytest.raises(ProtocolError, match="refuses to reveal both shares"):
        fed.nodes[0].unmask(both)
    bare = UnmaskRequest(recipient=0, survivors=(0, 1, 2, 3, 4), dropped=())
    with pytest.raises(ProtocolError, match="only 1 of its group signed"):
        fed.nodes[0].unmask(bare)
    forged = dict(signed)
    forged[1] = signed[2]  # someone else's signature under slot 1
    forged[3] = b"\x00" * 64
    request = UnmaskRequest(recipient=0, survivors=(0, 1, 2, 3, 4), dropped=(), signatures=forged)
    with pytest.raises(ProtocolError, match=r"only 3 of its group signed"):
        fed.nodes[0].unmask(request)  # 0, 2 and 4 valid: below t


def test_a_signed_run_needs_keys_and_a_fingerprint() -> None:
    with pytest.raises(ProtocolError, match="signing key"):
        NodeSecAgg(_params(), 0)
    with pytest.raises(ProtocolError, match="fingerprint is required"):
        CoordinatorSecAgg(_params(fingerprint=""))
