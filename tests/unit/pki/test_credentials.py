"""load_credentials, and sign / verify_signature with a party's key."""

from __future__ import annotations

import copy
import pickle

import pytest

from federation.errors import CertificateError, ConfigError
from federation.pki import (
    CertificateAuthority,
    Credentials,
    Role,
    issue,
    load_credentials,
    sign,
    verify_signature,
)
from federation.pki.credentials import DOMAIN_LABEL

MESSAGE = b"job-17 | node n1 | x25519 public key 0123456789abcdef"


@pytest.fixture
def node(ca: CertificateAuthority) -> Credentials:
    return load_credentials(issue(ca.directory, Role.NODE, "n1").key_path.parent)


def test_load_credentials_from_dir_or_file(ca: CertificateAuthority) -> None:
    cred = issue(ca.directory, Role.NODE, "n1")
    loaded = load_credentials(cred.key_path.parent)
    assert loaded.ca_pem == ca.certificate_pem
    assert loaded.cert_pem == cred.certificate_path.read_bytes()
    assert loaded.key_pem == cred.key_path.read_bytes()
    assert loaded.identity == cred.identity
    assert load_credentials(cred.certificate_path) == loaded
    assert load_credentials(cred.key_path.parent, "n1") == loaded


def test_credentials_do_not_print_or_pickle_their_key(node: Credentials) -> None:
    assert "PRIVATE" not in repr(node)
    assert "key_pem" not in repr(node)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(node)
    with pytest.raises(TypeError, match="cannot be pickled"):
        copy.copy(node)
    with pytest.raises(ValueError, match="unprotected=True"):
        node.export_private(unprotected=False)
    assert node.export_private(unprotected=True) == node.key_pem


def test_load_credentials_refuses_a_key_others_can_read(ca: CertificateAuthority) -> None:
    cred = issue(ca.directory, Role.NODE, "n1")
    cred.key_path.chmod(0o640)
    with pytest.raises(ConfigError, match=r"mode 0640.*chmod 600"):
        load_credentials(cred.key_path.parent)


def test_load_credentials_refuses_a_mismatched_key(ca: CertificateAuthority) -> None:
    a = issue(ca.directory, Role.NODE, "a")
    b = issue(ca.directory, Role.NODE, "b")
    a.certificate_path.write_bytes(b.certificate_path.read_bytes())
    with pytest.raises(CertificateError, match=r"is not the key of a\.crt"):
        load_credentials(a.key_path.parent)


def test_load_credentials_errors(ca: CertificateAuthority) -> None:
    cred = issue(ca.directory, Role.NODE, "n1")
    with pytest.raises(ConfigError, match="holds 0 private keys"):
        load_credentials(ca.directory / "issued")
    with pytest.raises(ConfigError, match=r"private key .*nobody\.key not found"):
        load_credentials(cred.key_path.parent, "nobody")
    cred.ca_path.unlink()
    with pytest.raises(ConfigError, match=r"incomplete: .*ca\.crt not found"):
        load_credentials(cred.key_path.parent)
    with pytest.raises(ConfigError, match="no credentials at"):
        load_credentials(ca.directory / "missing.crt")


def test_sign_verify_round_trip(node: Credentials) -> None:
    signature = sign(node.key_pem, MESSAGE)
    assert verify_signature(node.cert_pem, MESSAGE, signature)
    assert verify_signature(node.cert_pem, b"", sign(node.key_pem, b""))


def test_a_tampered_message_or_signature_fails(node: Credentials) -> None:
    signature = sign(node.key_pem, MESSAGE)
    assert not verify_signature(node.cert_pem, MESSAGE + b"!", signature)
    assert not verify_signature(node.cert_pem, MESSAGE[:-1], signature)
    flipped = bytearray(signature)
    flipped[-1] ^= 0x01
    assert not verify_signature(node.cert_pem, MESSAGE, bytes(flipped))
    assert not verify_signature(node.cert_pem, MESSAGE, signature[:-1])
    assert not verify_signature(node.cert_pem, MESSAGE, b"")


def test_another_partys_certificate_does_not_verify(
    ca: CertificateAuthority, node: Credentials
) -> None:
    other = load_credentials(issue(ca.directory, Role.NODE, "n2").key_path.parent)
    assert not verify_signature(other.cert_pem, MESSAGE, sign(node.key_pem, MESSAGE))


def test_signatures_are_domain_separated(node: Credentials) -> None:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = serialization.load_pem_private_key(node.key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    raw = key.sign(MESSAGE, ec.ECDSA(hashes.SHA256()))
    assert not verify_signature(node.cert_pem, MESSAGE, raw)
    assert len(DOMAIN_LABEL) > 64
    assert DOMAIN_LABEL[64] != 3
    assert DOMAIN_LABEL[0] not in (0x01, 0x20)


def test_sign_and_verify_argument_errors(node: Credentials) -> None:
    with pytest.raises(TypeError, match="data must be bytes"):
        sign(node.key_pem, "text")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be bytes"):
        verify_signature(node.cert_pem, MESSAGE, "sig")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="not an unencrypted PEM private key"):
        sign(b"not a key", MESSAGE)
    with pytest.raises(ConfigError, match="not an unencrypted PEM private key"):
        sign(node.cert_pem, MESSAGE)
    with pytest.raises(CertificateError, match="not a certificate"):
        verify_signature(b"nope", MESSAGE, b"sig")


def test_sign_refuses_keys_other_than_p256() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    for key in (ec.generate_private_key(ec.SECP384R1()), ed25519.Ed25519PrivateKey.generate()):
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        with pytest.raises(ConfigError, match="ECDSA P-256"):
            sign(pem, MESSAGE)
