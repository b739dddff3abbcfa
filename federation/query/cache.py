"""Memoised parsing and binding.

A query's text parses to the same :class:`~federation.query.parse.ParsedQuery`, and binds
against the same schema to the same :class:`~federation.query.bind.BoundQuery`, every
time: both are pure functions of their inputs and their results are immutable. An
analyst's session repeats queries (the SDK's models and ``describe`` send the same
shapes round after round, dashboards re-run theirs), and every node and the coordinator
bind each one, so both keep the last few hundred. Only successes are kept: an error is
raised afresh each time, and the schema is part of the key, so a node whose
configuration changes binds against its new schema.
"""

from __future__ import annotations

import functools

from federation.query.bind import BoundQuery, bind_query
from federation.query.parse import ParsedQuery, parse_query
from federation.schema import DatasetSchema

__all__ = ["bind_sql", "parse_sql"]

_ENTRIES = 256
"""Distinct query texts (and query-schema pairs) kept; at most a few MB."""


@functools.lru_cache(maxsize=_ENTRIES)
def _parsed(sql: str) -> ParsedQuery:
    return parse_query(sql)


@functools.lru_cache(maxsize=_ENTRIES)
def _bound(sql: str, schema: DatasetSchema) -> BoundQuery:
    return bind_query(_parsed(sql), schema)


def parse_sql(sql: str) -> ParsedQuery:
    """:func:`~federation.query.parse.parse_query`, memoised by the text."""
    if not isinstance(sql, str):
        return parse_query(sql)  # raises its usual error for a non-text query
    return _parsed(sql)


def bind_sql(sql: str, schema: DatasetSchema) -> BoundQuery:
    """``bind_query(parse_query(sql), schema)``, memoised by the text and the schema."""
    if not isinstance(sql, str):
        return bind_query(parse_query(sql), schema)  # raises for a non-text query
    return _bound(sql, schema)
