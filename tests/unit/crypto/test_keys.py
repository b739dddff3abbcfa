"""X25519 key pairs, secret containers and AEAD share transport: behaviour and negative matrix."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest

from federation.crypto.keys import (
    AEAD_OVERHEAD,
    MAX_PLAINTEXT_SIZE,
    NONCE_SIZE,
    SecretBytes,
    X25519KeyPair,
    open_sealed,
    seal,
    transport_associated_data,
    transport_key,
    transport_keys,
)

JOB = "job-7"


@pytest.fixture
def pair() -> tuple[X25519KeyPair, X25519KeyPair]:
    return X25519KeyPair.generate(), X25519KeyPair.generate()


def _key(a: X25519KeyPair, b: X25519KeyPair, sender: int = 1, recipient: int = 2) -> bytes:
    return transport_key(a.exchange(b.public_bytes), job_id=JOB, sender=sender, recipient=recipient)


def test_agreement_is_symmetric_and_fresh(pair: tuple[X25519KeyPair, X25519KeyPair]) -> None:
    a, b = pair
    assert a.exchange(b.public_bytes) == b.exchange(a.public_bytes)
    assert len(a.public_bytes) == 32
    assert a.public_bytes != b.public_bytes
    c = X25519KeyPair.generate()
    assert a.exchange(c.public_bytes) != a.exchange(b.public_bytes)


def test_private_key_round_trip(pair: tuple[X25519KeyPair, X25519KeyPair]) -> None:
    a, b = pair
    raw = a.export_private_bytes(unprotected=True)
    assert len(raw) == 32
    again = X25519KeyPair.from_private_bytes(raw)
    assert again.public_bytes == a.public_bytes
    assert again.exchange(b.public_bytes) == a.exchange(b.public_bytes)


@pytest.mark.parametrize(
    ("data", "error"),
    [(bytes(31), ValueError), (bytes(33), ValueError), ("x" * 32, TypeError), (None, TypeError)],
)
def test_from_private_bytes_rejects(data: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        X25519KeyPair.from_private_bytes(data)


def test_constructor_rejects_non_key() -> None:
    with pytest.raises(TypeError):
        X25519KeyPair(b"\x00" * 32)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("peer", "error"),
    [
        (bytes(31), ValueError),
        (bytes(33), ValueError),
        (b"", ValueError),
        ("x" * 32, TypeError),
        (bytearray(32), TypeError),
        (bytes(32), ValueError),  # the all-zero point has small order
        ((1).to_bytes(32, "little"), ValueError),  # so has the point u = 1
    ],
)
def test_exchange_rejects_bad_peer_keys(peer: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        X25519KeyPair.generate().exchange(peer)


def test_export_requires_explicit_acknowledgement() -> None:
    key = X25519KeyPair.generate()
    with pytest.raises(ValueError, match="unprotected=True"):
        key.export_private_bytes(unprotected=False)
    with pytest.raises(ValueError, match="unprotected=True"):
        key.export_private_bytes(unprotected="yes")  # type: ignore[arg-type]
    secret = SecretBytes.generate()
    with pytest.raises(ValueError, match="unprotected=True"):
        secret.export(unprotected=False)


@pytest.mark.parametrize("factory", [X25519KeyPair.generate, SecretBytes.generate])
def test_secrets_do_not_print_or_pickle(factory: Any) -> None:
    obj = factory()
    raw = (
        obj.export_private_bytes(unprotected=True)
        if isinstance(obj, X25519KeyPair)
        else obj.export(unprotected=True)
    )
    for text in (repr(obj), str(obj), f"{obj!r}"):
        assert raw.hex() not in text
        assert "redacted" in text
    with pytest.raises(TypeError, match="unprotected=True"):
        pickle.dumps(obj)
    with pytest.raises(TypeError):
        copy.copy(obj)
    with pytest.raises(TypeError):
        copy.deepcopy(obj)


def test_secret_bytes_basics() -> None:
    secret = SecretBytes(b"k" * 32)
    assert len(secret) == 32
    assert secret.export(unprotected=True) == b"k" * 32
    assert SecretBytes.generate().export(unprotected=True) != SecretBytes.generate().export(
        unprotected=True
    )
    with pytest.raises(TypeError):
        SecretBytes("text")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 16"):
        SecretBytes.generate(8)


def test_seal_open_round_trip(pair: tuple[X25519KeyPair, X25519KeyPair]) -> None:
    a, b = pair
    sealed = seal(_key(a, b), b"shares", job_id=JOB, sender=1, recipient=2)
    assert len(sealed) == len(b"shares") + AEAD_OVERHEAD
    assert open_sealed(_key(b, a), sealed, job_id=JOB, sender=1, recipient=2) == b"shares"
    # Random nonces: sealing twice gives different ciphertexts.
    assert seal(_key(a, b), b"shares", job_id=JOB, sender=1, recipient=2) != sealed


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


@pytest.mark.parametrize("index", [0, NONCE_SIZE - 1, NONCE_SIZE, NONCE_SIZE + 5, -1])
def test_tampered_ciphertext_is_refused(
    pair: tuple[X25519KeyPair, X25519KeyPair], index: int
) -> None:
    a, b = pair
    sealed = seal(_key(a, b), b"x" * 140, job_id=JOB, sender=1, recipient=2)
    with pytest.raises(ValueError, match="authentication"):
        open_sealed(_key(b, a), _flip(sealed, index), job_id=JOB, sender=1, recipient=2)


@pytest.mark.parametrize(
    "binding",
    [
        {"job_id": "job-8", "sender": 1, "recipient": 2},
        {"job_id": JOB, "sender": 3, "recipient": 2},
        {"job_id": JOB, "sender": 1, "recipient": 3},
        {"job_id": JOB, "sender": 2, "recipient": 1},
    ],
)
def test_associated_data_binds_job_sender_recipient(
    pair: tuple[X25519KeyPair, X25519KeyPair], binding: dict[str, Any]
) -> None:
    a, b = pair
    key = _key(a, b)
    sealed = seal(key, b"x" * 140, job_id=JOB, sender=1, recipient=2)
    with pytest.raises(ValueError, match="authentication"):
        open_sealed(key, sealed, **binding)


def test_wrong_key_is_refused(pair: tuple[X25519KeyPair, X25519KeyPair]) -> None:
    a, b = pair
    sealed = seal(_key(a, b), b"x", job_id=JOB, sender=1, recipient=2)
    other = _key(X25519KeyPair.generate(), b)
    with pytest.raises(ValueError, match="authentication"):
        open_sealed(other, sealed, job_id=JOB, sender=1, recipient=2)
    reverse = _key(a, b, sender=2, recipient=1)  # the other direction's key
    with pytest.raises(ValueError, match="authentication"):
        open_sealed(reverse, sealed, job_id=JOB, sender=1, recipient=2)


@pytest.mark.parametrize(
    ("sealed", "error"),
    [
        (b"", ValueError),
        (bytes(AEAD_OVERHEAD - 1), ValueError),
        (bytes(MAX_PLAINTEXT_SIZE + AEAD_OVERHEAD + 1), ValueError),
        ("x" * 64, TypeError),
        (bytearray(64), TypeError),
    ],
)
def test_open_rejects_malformed(sealed: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        open_sealed(bytes(32), sealed, job_id=JOB, sender=1, recipient=2)


def test_open_of_exactly_overhead_bytes_fails_authentication() -> None:
    with pytest.raises(ValueError, match="authentication"):
        open_sealed(bytes(32), bytes(AEAD_OVERHEAD), job_id=JOB, sender=1, recipient=2)


@pytest.mark.parametrize(
    ("key", "plaintext", "error"),
    [
        (bytes(16), b"x", ValueError),
        (bytes(31), b"x", ValueError),
        ("k" * 32, b"x", TypeError),
        (bytes(32), "text", TypeError),
        (bytes(32), bytes(MAX_PLAINTEXT_SIZE + 1), ValueError),
    ],
)
def test_seal_rejects(key: Any, plaintext: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        seal(key, plaintext, job_id=JOB, sender=1, recipient=2)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((b"job", 1, 2), TypeError),
        ((JOB, -1, 2), ValueError),
        ((JOB, 1, 2**32), ValueError),
        ((JOB, "1", 2), TypeError),
        ((JOB, 1, False), TypeError),
    ],
)
def test_associated_data_rejects(args: tuple[Any, ...], error: type[Exception]) -> None:
    with pytest.raises(error):
        transport_associated_data(*args)


def test_associated_data_is_injective() -> None:
    assert transport_associated_data("a", 1, 2) != transport_associated_data("a", 2, 1)
    assert transport_associated_data("a\x00", 1, 2) != transport_associated_data("a", 1, 2)


def test_transport_keys_are_both_directions() -> None:
    secret = bytes(range(32))
    send, receive = transport_keys(secret, job_id=JOB, local=3, peer=9)
    assert send == transport_key(secret, job_id=JOB, sender=3, recipient=9)
    assert receive == transport_key(secret, job_id=JOB, sender=9, recipient=3)
    assert send != receive
    with pytest.raises(ValueError, match="at least 16 bytes"):
        transport_keys(bytes(8), job_id=JOB, local=3, peer=9)
    with pytest.raises(TypeError):
        transport_keys(secret, job_id=JOB, local=True, peer=9)


def test_associated_data_layout_and_str_subclasses() -> None:
    class JobId(str):
        __slots__ = ()

    expected = b"federation/secagg+/v1/shares\x00" + (3).to_bytes(4, "big") + b"job"
    expected += (1).to_bytes(4, "big") + (2).to_bytes(4, "big")
    assert transport_associated_data("job", 1, 2) == expected
    assert transport_associated_data(JobId("job"), 1, 2) == expected
    # Cached prefixes never mix jobs up.
    assert transport_associated_data("jo", 1, 2) != expected
