"""HERun: the coordinator's homomorphic sum over live sessions (no gRPC, real Paillier).

Keys are the 1024-bit test-only preset, opted into explicitly, for speed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from coordinator.directory import NodeSession
from coordinator.he_run import HERun
from federation.crypto.keys import X25519KeyPair
from federation.errors import ProtocolError, TooFewParticipantsError
from federation.messages import Protocol, TaskAssignment, TaskCancelled
from federation.protocols.he import SumSpec, mask_values
from federation.protocols.he.paillier import (
    PAILLIER,
    PaillierPreset,
    PaillierSecretKey,
    weak_keys_allowed,
)
from federation.transport.backend import QueueOutbox

NODES = 3


@pytest.fixture(scope="module", autouse=True)
def _weak_keys() -> Iterator[None]:
    with weak_keys_allowed():
        yield


@pytest.fixture(scope="module")
def analyst_keys() -> tuple[PaillierSecretKey, PaillierSecretKey]:
    with weak_keys_allowed():
        return (
            PaillierSecretKey.generate(PaillierPreset.TEST_ONLY_1024),
            PaillierSecretKey.generate(PaillierPreset.TEST_ONLY_1024),
        )


class Federation:
    """Three sessions with mask keys, and what a node would upload."""

    def __init__(self, key: PaillierSecretKey, round_timeout: float = 10.0) -> None:
        self.key = key
        self.masks = [X25519KeyPair.generate() for _ in range(NODES)]
        self.outboxes = [QueueOutbox() for _ in range(NODES)]
        self.sessions = [
            NodeSession(
                name=f"node-{i}",
                outbox=self.outboxes[i],
                datasets={},
                peer="test",
                last_seen=time.monotonic(),
                mask_public_key=self.masks[i].public_bytes,
            )
            for i in range(NODES)
        ]
        self.spec = SumSpec("job-1", 5, 20, NODES)
        self.run = HERun(
            Protocol.PAILLIER,
            PAILLIER,
            key.public_bytes(),
            self.spec,
            self.sessions,
            dataset="t",
            sql="SELECT COUNT(*) FROM t",
            fingerprint="f" * 64,
            round_timeout=round_timeout,
        )
        gen = np.random.default_rng(3)
        self.values = [gen.integers(0, 1000, self.spec.length) for _ in range(NODES)]

    def share(self, slot: int, key: PaillierSecretKey | None = None) -> bytes:
        peers = {j: self.masks[j].public_bytes for j in range(NODES) if j != slot}
        masked = mask_values(self.values[slot], self.spec, slot, self.masks[slot], peers)
        return PAILLIER.encrypt((key or self.key).public_bytes(), masked, self.spec)

    def start(self) -> tuple[threading.Thread, dict[str, object]]:
        outcome: dict[str, object] = {}

        def target() -> None:
            try:
                outcome["combined"] = self.run.run()
            except Exception as exc:  # the test inspects it
                outcome["error"] = exc

        thread = threading.Thread(target=target)
        thread.start()
        return thread, outcome


def _drain(outbox: QueueOutbox) -> list[object]:
    out = []
    while not outbox._queue.empty():
        out.append(outbox._queue.get_nowait())
    return out


def test_every_share_is_combined_into_the_plain_sum(
    analyst_keys: tuple[PaillierSecretKey, PaillierSecretKey],
) -> None:
    fed = Federation(analyst_keys[0])
    thread, outcome = fed.start()
    for slot in range(NODES):
        fed.run.deliver(fed.sessions[slot], fed.share(slot))
    thread.join(10)
    combined = outcome["combined"]
    assert isinstance(combined, bytes)
    expected = [int(sum(int(v[i]) for v in fed.values)) for i in range(fed.spec.length)]
    assert fed.key.decrypt_sum(combined, fed.spec).tolist() == expected
    for outbox in fed.outboxes:
        (task,) = _drain(outbox)
        assert isinstance(task, TaskAssignment)
        assert task.he is not None
        assert task.he.public_key == fed.key.public_bytes()


def test_one_share_alone_decrypts_to_noise(
    analyst_keys: tuple[PaillierSecretKey, PaillierSecretKey],
) -> None:
    # What a coordinator that forwards one node's ciphertext would hand the analyst.
    fed = Federation(analyst_keys[0])
    alone = fed.key.decrypt_sum(fed.share(0), fed.spec)
    assert alone.tolist() != fed.values[0].tolist()


def test_a_share_under_a_stale_key_fails_the_job_naming_the_node(
    analyst_keys: tuple[PaillierSecretKey, PaillierSecretKey],
) -> None:
    fresh, stale = analyst_keys
    fed = Federation(fresh)
    thread, outcome = fed.start()
    fed.run.deliver(fed.sessions[0], fed.share(0))
    fed.run.deliver(fed.sessions[1], fed.share(1, key=stale))
    fed.run.deliver(fed.sessions[2], fed.share(2))
    thread.join(10)
    error = outcome["error"]
    assert isinstance(error, ProtocolError)
    assert "node-1" in error.message
    assert "node-0" not in error.message
    assert "key" in error.message
    assert error.job_id == "job-1"
    for outbox in fed.outboxes:
        assert isinstance(_drain(outbox)[-1], TaskCancelled)


def test_a_truncated_share_fails_the_job_naming_the_node(
    analyst_keys: tuple[PaillierSecretKey, PaillierSecretKey],
) -> None:
    fed = Federation(analyst_keys[0])
    thread, outcome = fed.start()
    for slot in range(NODES):
        share = fed.share(slot)
        fed.run.deliver(fed.sessions[slot], share[:-7] if slot == 2 else share)
    thread.join(10)
    error = outcome["error"]
    assert isinstance(error, ProtocolError)
    assert "node-2" in error.message
    assert "truncated" in error.message


def test_a_silent_node_fails_the_job_at_the_deadline(
    analyst_keys: tuple[PaillierSecretKey, PaillierSecretKey],
) -> None:
    fed = Federation(analyst_keys[0], round_timeout=0.5)
    thread, outcome = fed.start()
    fed.run.deliver(fed.sessions[0], fed.share(0))
    fed.run.deliver(fed.sessions[2], fed.share(2))
    thread.join(10)
    error = outcome["error"]
    assert isinstance(error, TooFewParticipantsError)
    assert "node-1" in error.message
    assert "node-0" not in error.message
