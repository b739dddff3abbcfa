"""The public API is exactly what federation/__init__.py curates."""

from __future__ import annotations

import federation


def test_all_names_exist_and_are_sorted() -> None:
    assert sorted(federation.__all__) == list(federation.__all__)
    missing = [n for n in federation.__all__ if not hasattr(federation, n)]
    assert missing == []


def test_public_api() -> None:
    public = {n for n in dir(federation) if not n.startswith("_")}
    exported = set(federation.__all__) - {"__version__"}
    # submodules are importable but not part of the curated surface
    modules = {n for n in public - exported if type(getattr(federation, n)).__name__ == "module"}
    assert public - modules == exported
    for name in ("connect", "simulate", "Client", "QueryResult", "FederationError"):
        assert name in federation.__all__
