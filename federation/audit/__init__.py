"""The tamper-evident audit log: RFC 6962 Merkle trees, signed tree heads, verification."""
