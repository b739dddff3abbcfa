"""A fresh CA per test (ECDSA P-256 keys take microseconds)."""

from __future__ import annotations

from pathlib import Path

import pytest

from federation.pki import CertificateAuthority, init_ca

FEDERATION = "acme"


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return init_ca(tmp_path / "pki", FEDERATION)


@pytest.fixture
def other_ca(tmp_path: Path) -> CertificateAuthority:
    """A second CA with the same federation name, so only its key tells it apart."""
    return init_ca(tmp_path / "other-pki", FEDERATION)
