"""A small PKI for one federation: its CA, the parties' certificates, and revocation.

- :mod:`~federation.pki.roles`: the :class:`Role` of each party, safe names, and the
  identity URI ``federation://<federation>/<role>/<name>`` every certificate carries.
- :mod:`~federation.pki.authority`: :func:`init_ca` and :func:`issue` keep the CA
  directory; :mod:`~federation.pki.certificates` builds what goes into the
  certificates (ECDSA P-256 everywhere: gRPC's TLS supports it, and the same key
  signs protocol messages).
- :mod:`~federation.pki.revocation` and :mod:`~federation.pki.crl`: :func:`revoke`
  re-signs the CRL; :func:`load_revoked_serials` reads one only if the CA signed it.
- :mod:`~federation.pki.identity`: :func:`identity_from_certificate` and
  :func:`verify_issued_by` for peer certificates.
- :mod:`~federation.pki.credentials`: :func:`load_credentials` for a party, and
  :func:`sign` / :func:`verify_signature` with its key.
- :mod:`~federation.pki.files` writes private keys 0600 from their first byte, and
  :mod:`~federation.pki.index` keeps the CA's append-only ``index.jsonl``.

Argument and file problems raise :class:`~federation.errors.ConfigError`; a
certificate, CRL or signature that does not check out raises
:class:`~federation.errors.CertificateError`.

>>> import tempfile                                              # doctest: +SKIP
>>> d = tempfile.mkdtemp() + "/pki"                              # doctest: +SKIP
>>> ca = init_ca(d, "acme")                                      # doctest: +SKIP
>>> issue(d, Role.NODE, "hospital-a").identity.uri               # doctest: +SKIP
'federation://acme/node/hospital-a'
"""

from federation.pki.authority import (
    CertificateAuthority,
    IssuedCredential,
    init_ca,
    issue,
    open_ca,
)
from federation.pki.credentials import (
    Credentials,
    SigningKey,
    VerifyingKey,
    load_credentials,
    sign,
    verify_signature,
)
from federation.pki.crl import load_revoked_serials
from federation.pki.identity import Identity, identity_from_certificate, verify_issued_by
from federation.pki.index import IndexEntry
from federation.pki.revocation import refresh_crl, revoke
from federation.pki.roles import Role

__all__ = [
    "CertificateAuthority",
    "Credentials",
    "Identity",
    "IndexEntry",
    "IssuedCredential",
    "Role",
    "SigningKey",
    "VerifyingKey",
    "identity_from_certificate",
    "init_ca",
    "issue",
    "load_credentials",
    "load_revoked_serials",
    "open_ca",
    "refresh_crl",
    "revoke",
    "sign",
    "verify_issued_by",
    "verify_signature",
]
