"""Dataset schemas: the metadata a node publishes to the directory.

A schema names a dataset's columns, their types, the declared domain of each
categorical column, optional numeric bounds and a classification label. It holds
no data. The same schema is what the coordinator plans against and what each
node checks a task against, so its canonical form and fingerprint must be
identical on every machine.

>>> s = DatasetSchema("patients", (Column("age", ColumnType.INTEGER),
...                                Column("sex", ColumnType.CATEGORICAL, domain=("F", "M"))))
>>> s.column("sex").domain
('F', 'M')
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from federation.errors import ConfigError, UnknownColumnError

__all__ = ["Classification", "Column", "ColumnType", "DatasetSchema"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class ColumnType(enum.Enum):
    """The logical type of a column."""

    INTEGER = "integer"
    """64-bit signed integers; aggregated exactly."""
    DOUBLE = "double"
    """IEEE-754 binary64; aggregated in exact fixed point (see ``federation.encoding``)."""
    CATEGORICAL = "categorical"
    """Text from a declared, finite domain; may be grouped by."""
    TEXT = "text"
    """Free text; may only be filtered on and counted."""


class Classification(enum.Enum):
    """How sensitive a column is; enforced by the node's policy."""

    PUBLIC = "public"
    INTERNAL = "internal"
    CONFIDENTIAL = "confidential"
    RESTRICTED = "restricted"


@dataclass(frozen=True)
class Column:
    """One column of a dataset schema."""

    name: str
    type: ColumnType
    domain: tuple[str, ...] = ()
    bounds: tuple[float, float] | None = None
    classification: Classification = Classification.INTERNAL
    description: str = ""

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ConfigError(
                f"column name {self.name!r} is not a plain identifier "
                "(letters, digits and underscores, starting with a letter or underscore)"
            )
        if self.type is ColumnType.CATEGORICAL:
            if not self.domain:
                raise ConfigError(
                    f"categorical column {self.name!r} needs a declared domain, "
                    'e.g. domain = ["F", "M"]'
                )
            if len(set(self.domain)) != len(self.domain):
                raise ConfigError(f"categorical column {self.name!r} repeats a domain value")
            if not all(isinstance(v, str) for v in self.domain):
                raise ConfigError(f"domain values of column {self.name!r} must be strings")
        elif self.domain:
            raise ConfigError(
                f"column {self.name!r} is {self.type.value}; only categorical columns take a domain"
            )
        if self.bounds is not None:
            if self.type not in (ColumnType.INTEGER, ColumnType.DOUBLE):
                raise ConfigError(f"column {self.name!r}: bounds apply to numeric columns only")
            lo, hi = self.bounds
            if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
                raise ConfigError(
                    f"column {self.name!r}: bounds must be finite with lower <= upper, "
                    f"got [{lo}, {hi}]"
                )

    @property
    def is_numeric(self) -> bool:
        """True for integer and double columns."""
        return self.type in (ColumnType.INTEGER, ColumnType.DOUBLE)

    def to_dict(self) -> dict[str, Any]:
        """Canonical JSON-ready form."""
        out: dict[str, Any] = {
            "name": self.name,
            "type": self.type.value,
            "classification": self.classification.value,
        }
        if self.domain:
            out["domain"] = list(self.domain)
        if self.bounds is not None:
            out["bounds"] = [float(self.bounds[0]), float(self.bounds[1])]
        if self.description:
            out["description"] = self.description
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Column:
        """Parse the form produced by :meth:`to_dict` (or a node config entry)."""
        name = data.get("name")
        if not isinstance(name, str):
            raise ConfigError("every column needs a string 'name'")
        known = {"name", "type", "domain", "bounds", "classification", "description"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"column {name!r}: unknown key(s) {unknown}; expected some of {sorted(known)}"
            )
        try:
            ctype = ColumnType(data.get("type"))
        except ValueError:
            raise ConfigError(
                f"column {name!r}: type must be one of "
                f"{[t.value for t in ColumnType]}, got {data.get('type')!r}"
            ) from None
        try:
            classification = Classification(data.get("classification", "internal"))
        except ValueError:
            raise ConfigError(
                f"column {name!r}: classification must be one of "
                f"{[c.value for c in Classification]}, got {data.get('classification')!r}"
            ) from None
        bounds_raw = data.get("bounds")
        bounds: tuple[float, float] | None = None
        if bounds_raw is not None:
            if not (isinstance(bounds_raw, (list, tuple)) and len(bounds_raw) == 2):
                raise ConfigError(f"column {name!r}: bounds must be [lower, upper]")
            try:
                bounds = (float(bounds_raw[0]), float(bounds_raw[1]))
            except (TypeError, ValueError):
                raise ConfigError(f"column {name!r}: bounds must be numbers") from None
        domain_raw = data.get("domain", ())
        if not isinstance(domain_raw, (list, tuple)):
            raise ConfigError(f"column {name!r}: domain must be a list of strings")
        return cls(
            name=name,
            type=ctype,
            domain=tuple(domain_raw),
            bounds=bounds,
            classification=classification,
            description=str(data.get("description", "")),
        )


@dataclass(frozen=True)
class DatasetSchema:
    """The published description of one dataset (no data)."""

    name: str
    columns: tuple[Column, ...]
    description: str = ""
    _index: dict[str, Column] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ConfigError(
                f"dataset name {self.name!r} is not a plain identifier "
                "(letters, digits and underscores)"
            )
        if not self.columns:
            raise ConfigError(f"dataset {self.name!r} declares no columns")
        index: dict[str, Column] = {}
        for col in self.columns:
            key = col.name.lower()
            if key in index:
                raise ConfigError(f"dataset {self.name!r} declares column {col.name!r} twice")
            index[key] = col
        object.__setattr__(self, "_index", index)

    def column(self, name: str) -> Column:
        """Look a column up by name (case-insensitive, as SQL identifiers are)."""
        try:
            return self._index[name.lower()]
        except KeyError:
            raise UnknownColumnError(
                f"dataset {self.name!r} has no column {name!r}; "
                f"its columns are {[c.name for c in self.columns]}"
            ) from None

    def has_column(self, name: str) -> bool:
        """True if the dataset has a column of that name."""
        return name.lower() in self._index

    def to_dict(self) -> dict[str, Any]:
        """Canonical JSON-ready form."""
        out: dict[str, Any] = {
            "name": self.name,
            "columns": [c.to_dict() for c in self.columns],
        }
        if self.description:
            out["description"] = self.description
        return out

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no whitespace): identical on every machine."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatasetSchema:
        """Parse the form produced by :meth:`to_dict`."""
        name = data.get("name")
        if not isinstance(name, str):
            raise ConfigError("a dataset schema needs a string 'name'")
        cols = data.get("columns")
        if not isinstance(cols, list):
            raise ConfigError(f"dataset {name!r}: 'columns' must be a list")
        return cls(
            name=name,
            columns=tuple(Column.from_dict(c) for c in cols),
            description=str(data.get("description", "")),
        )

    @classmethod
    def from_json(cls, text: str) -> DatasetSchema:
        """Parse the form produced by :meth:`to_json`."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"dataset schema is not valid JSON: {exc.msg}") from None
        if not isinstance(data, dict):
            raise ConfigError("dataset schema JSON must be an object")
        return cls.from_dict(data)

    def fingerprint(self) -> str:
        """SHA-256 of the canonical JSON, hex: equal schemas have equal fingerprints."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()
