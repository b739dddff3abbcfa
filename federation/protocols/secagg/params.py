"""Choosing the SecAgg+ parameters: neighbour count ``k`` and Shamir threshold ``t``.

Rule (``n`` slots, dropout tolerance ``delta``):

- ``k(n) = max(20, 2 * ceil(1.5 * log2(n)))``, about ``3 log2 n``; the graph is
  complete (``k = n - 1``) when ``n <= k(n) + 1``, i.e. for ``n <= 21``.
  Examples: n=100 -> k=20, n=1000 -> k=30, n=10**4 -> k=40, n=2**15 -> k=46.
- A node's *group* is itself plus its ``k`` neighbours (``k + 1`` members). Each
  group may lose ``b = floor(delta * (k + 1))`` members: ``t = k + 1 - b``.
- ``delta`` must lie in ``[0, 0.45]``, which keeps ``t > (k + 1) / 2`` (a majority of
  every group is needed, so no two disjoint sets of holders can each recover a
  secret) and ``t >= 2`` (no single holder learns a secret), and ``b < k / 2`` (so
  losing at most ``b`` per group cannot disconnect the Harary graph's survivors).

Guarantee: if no group loses more than ``b`` members over the whole run, the sum of
everyone who uploaded a masked input is recovered exactly. Otherwise the run
aborts cleanly (:class:`~federation.errors.TooFewParticipantsError`), with nothing
reconstructed.

>>> p = make_params("job-1", 100, 10)
>>> len(p.neighbours[0]), p.threshold
(20, 15)
"""

from __future__ import annotations

import math
from functools import lru_cache

from federation.errors import ProtocolError
from federation.protocols.secagg.graph import build_graph, check_graph
from federation.protocols.secagg.messages import SecAggParams

__all__ = [
    "DEFAULT_DROPOUT_TOLERANCE",
    "MAX_DROPOUT_TOLERANCE",
    "MAX_JOB_ID_BYTES",
    "MAX_SLOTS",
    "MAX_VECTOR_LENGTH",
    "MIN_SLOTS",
    "make_params",
    "neighbour_count",
    "threshold_for",
    "validate_params",
]

MAX_SLOTS = 2**15
"""Largest number of nodes in one secure aggregation."""
MIN_SLOTS = 3
"""Smallest number of nodes: with two, either node (or anyone holding one input)
learns the other's input from the sum, and no dropout could be tolerated."""
DEFAULT_DROPOUT_TOLERANCE = 0.3
"""Fraction of each group that may drop out at any point of the run."""
MAX_DROPOUT_TOLERANCE = 0.45
MAX_VECTOR_LENGTH = 2**27
"""Largest vector (1 GiB of uint64)."""
MAX_JOB_ID_BYTES = 256
_MIN_SPARSE_DEGREE = 20


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def neighbour_count(slots: int) -> int:
    """Return ``k``, the number of neighbours of each node among ``slots`` nodes."""
    sparse = max(_MIN_SPARSE_DEGREE, 2 * math.ceil(1.5 * math.log2(max(slots, 2))))
    return slots - 1 if slots <= sparse + 1 else sparse


def threshold_for(group_size: int, dropout_tolerance: float) -> int:
    """Return the Shamir threshold for groups of ``group_size`` tolerating the given fraction."""
    budget = math.floor(dropout_tolerance * group_size + 1e-9)
    return max(group_size - budget, group_size // 2 + 1, 2)


def make_params(
    job_id: str,
    slots: int,
    vector_length: int,
    *,
    dropout_tolerance: float = DEFAULT_DROPOUT_TOLERANCE,
) -> SecAggParams:
    """Build the public parameters of a run: the neighbour graph and the threshold.

    Args:
        job_id: Non-empty job identifier (at most 256 UTF-8 bytes).
        slots: Number of nodes, in ``[MIN_SLOTS, MAX_SLOTS]`` (3 to 32768).
        vector_length: Length of the summed vectors, in ``[1, MAX_VECTOR_LENGTH]``.
        dropout_tolerance: Fraction of each group that may drop, in ``[0, 0.45]``.

    Raises:
        ProtocolError: If an argument is out of range (the message says which and why).
    """
    if not _is_int(slots) or not MIN_SLOTS <= slots <= MAX_SLOTS:
        raise ProtocolError(
            f"slots must be an int in [{MIN_SLOTS}, {MAX_SLOTS}], got {slots!r}; "
            "an aggregate of fewer nodes would reveal individual inputs"
        )
    if not isinstance(dropout_tolerance, int | float) or isinstance(dropout_tolerance, bool):
        raise ProtocolError("dropout_tolerance must be a number")
    if not 0 <= dropout_tolerance <= MAX_DROPOUT_TOLERANCE:
        raise ProtocolError(
            f"dropout_tolerance must lie in [0, {MAX_DROPOUT_TOLERANCE}], got {dropout_tolerance}; "
            "higher values would let a minority of a group recover its secrets"
        )
    degree = neighbour_count(slots)
    params = SecAggParams(
        job_id=job_id,
        slots=slots,
        vector_length=vector_length,
        neighbours=build_graph(slots, degree),
        threshold=threshold_for(degree + 1, dropout_tolerance),
    )
    validate_params(params)
    return params


def validate_params(params: SecAggParams) -> None:
    """Check parameters received from elsewhere before trusting them.

    Checks types and ranges, that the graph is well formed and connected, and that
    the threshold is a strict majority of every group (and at least 2). The result
    is cached for the last few parameter sets (they are immutable).

    Raises:
        ProtocolError: Naming the defect.
    """
    if not isinstance(params, SecAggParams):
        raise ProtocolError(f"expected SecAggParams, got {type(params).__name__}")
    try:
        _validate(params)  # hashes params once (a large graph makes that the cost of a hit)
    except TypeError:
        try:
            hash(params)
        except TypeError:
            raise ProtocolError(
                "SecAggParams fields must be immutable (tuples, not lists)"
            ) from None
        raise


@lru_cache(maxsize=16)
def _validate(params: SecAggParams) -> None:
    if not isinstance(params.job_id, str) or not params.job_id:
        raise ProtocolError("job_id must be a non-empty str")
    if len(params.job_id.encode("utf-8")) > MAX_JOB_ID_BYTES:
        raise ProtocolError(f"job_id must have at most {MAX_JOB_ID_BYTES} UTF-8 bytes")
    if not _is_int(params.slots) or not MIN_SLOTS <= params.slots <= MAX_SLOTS:
        raise ProtocolError(
            f"slots must be an int in [{MIN_SLOTS}, {MAX_SLOTS}], got {params.slots!r}"
        )
    if not _is_int(params.vector_length) or not 1 <= params.vector_length <= MAX_VECTOR_LENGTH:
        raise ProtocolError(
            f"vector_length must be an int in [1, {MAX_VECTOR_LENGTH}], "
            f"got {params.vector_length!r}"
        )
    check_graph(params.neighbours, params.slots)
    if not isinstance(params.signed, bool):
        raise ProtocolError("signed must be a bool")
    if not isinstance(params.fingerprint, str) or len(params.fingerprint) > 128:
        raise ProtocolError("fingerprint must be a str of at most 128 characters")
    if params.signed and not params.fingerprint:
        raise ProtocolError("a signed run binds the computation: its fingerprint is required")
    t = params.threshold
    if not _is_int(t) or t < 2:
        raise ProtocolError(f"threshold must be an int >= 2, got {t!r}")
    for u, adjacent in enumerate(params.neighbours):
        group = len(adjacent) + 1
        if not group // 2 < t <= group:
            raise ProtocolError(
                f"threshold {t} must be a strict majority of slot {u}'s group of {group} "
                "and at most its size"
            )
