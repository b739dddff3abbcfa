"""The coordinator's last step: recover the secrets it needs and remove every mask.

With ``U3`` the nodes whose masked inputs were summed and ``D`` the nodes that
sent shares but no masked input, the masked sum is::

    sum_{u in U3} y_u = sum_{u in U3} x_u + sum_{u in U3} PRG(b_u)
                        + sum_{u in U3, v in D, v ~ u} sign(u, v) PRG(s_uv)

(pairwise masks between two members of ``U3`` cancel; ``sign`` is ``+`` if
``u < v``). The coordinator recovers each ``b_u`` (u in U3) from the seed shares and
each masking key ``s_sk_v`` (v in D with a neighbour in U3) from the key shares,
then subtracts the remaining masks. It recovers nothing unless every needed secret
has ``threshold`` shares: :func:`shortfall` is checked first.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Collection, Mapping, Sequence

from federation.crypto.keys import X25519KeyPair
from federation.crypto.prg import Label, MaskApplier, derive_key
from federation.crypto.shamir_batch import ShareSetError, combine_batch
from federation.errors import ProtocolError, TooFewParticipantsError
from federation.protocols.secagg.messages import SecAggParams, UnmaskResponse, Vector

__all__ = ["masks_to_remove", "recover_sum", "shortfall"]


def masks_to_remove(
    params: SecAggParams, survivors: Collection[int], dropped: Collection[int]
) -> list[int]:
    """Return the dropped nodes whose pairwise masks are in the sum (a neighbour survived)."""
    return sorted(v for v in dropped if any(u in survivors for u in params.neighbours[v]))


def _plan(
    params: SecAggParams,
    survivors: Collection[int],
    dropped: Collection[int],
    responders: Collection[int],
) -> tuple[dict[int, list[int]], dict[int, list[int]], str | None]:
    """Holders (sorted, at most ``threshold``) of each needed seed and key, or a shortfall."""
    t = params.threshold
    graph = params.neighbours
    seeds: dict[int, list[int]] = {}
    for u in sorted(survivors):
        holders = [r for r in graph[u] if r in responders]  # graph[u] is sorted
        if u in responders:
            insort(holders, u)
        if len(holders) < t:
            return {}, {}, f"the self-mask seed of slot {u} has {len(holders)} of {t} shares"
        del holders[t:]
        seeds[u] = holders
    keys: dict[int, list[int]] = {}
    for v in masks_to_remove(params, survivors, dropped):
        holders = [r for r in graph[v] if r in responders]
        if len(holders) < t:
            return {}, {}, (f"the masking key of dropped slot {v} has {len(holders)} of {t} shares")
        del holders[t:]
        keys[v] = holders
    return seeds, keys, None


def shortfall(
    params: SecAggParams,
    survivors: Collection[int],
    dropped: Collection[int],
    responders: Collection[int],
) -> str | None:
    """Describe the first secret with fewer than ``threshold`` holders among ``responders``.

    Returns:
        ``None`` if every secret needed to unmask the sum of ``survivors`` can be
        recovered from ``responders``; otherwise a sentence naming the slot.
    """
    return _plan(params, survivors, dropped, responders)[2]


def _combine(
    owners: Sequence[int], shares: Sequence[Sequence[bytes]], threshold: int, what: str
) -> list[bytes]:
    """Recover each owner's secret (all at once: secrets whose holders have the same
    points share one interpolation); the error names the first inconsistent owner.

    ``what`` names a secret, with ``{}`` for its owner's slot.
    """
    try:
        return combine_batch(shares, threshold)
    except ShareSetError as error:
        secret = what.format(owners[error.index])
        raise ProtocolError(f"the shares of {secret} are inconsistent; nothing released") from None


def recover_sum(
    params: SecAggParams,
    masked_sum: Vector,
    *,
    survivors: Collection[int],
    dropped: Collection[int],
    responses: Mapping[int, UnmaskResponse],
    masking_keys: Mapping[int, bytes],
) -> Vector:
    """Recover the needed secrets and unmask ``masked_sum`` in place (and return it).

    Every secret is recovered and checked before the vector is touched.

    Args:
        params: The run's parameters.
        masked_sum: Sum of the survivors' masked inputs; overwritten with the sum.
        survivors: Slots whose masked inputs are in ``masked_sum``.
        dropped: Slots that sent shares but no masked input.
        responses: Validated unmask responses, by sender.
        masking_keys: Every advertised masking public key, by slot.

    Raises:
        TooFewParticipantsError: If a needed secret has fewer than ``threshold`` shares
            (checked before anything is recovered).
        ProtocolError: If shares are inconsistent (e.g. a recovered masking key that
            does not match its public key).
    """
    seed_holders, key_holders, problem = _plan(params, survivors, dropped, responses)
    if problem is not None:
        raise TooFewParticipantsError(problem)
    t, job = params.threshold, params.job_id
    add: list[bytes] = []
    subtract: list[bytes] = []
    seed_shares = {r: response.self_mask_shares for r, response in responses.items()}
    owners = list(seed_holders)
    seeds = _combine(
        owners,
        [[seed_shares[r][u] for r in holders] for u, holders in seed_holders.items()],
        t,
        "slot {}'s self-mask seed",
    )
    subtract += [
        derive_key(seed, Label.SELF_MASK, job, u) for u, seed in zip(owners, seeds, strict=True)
    ]
    lost = list(key_holders)
    secrets = _combine(
        lost,
        [[responses[r].key_shares[v] for r in holders] for v, holders in key_holders.items()],
        t,
        "dropped slot {}'s masking key",
    )
    for v, secret in zip(lost, secrets, strict=True):
        key = X25519KeyPair.from_private_bytes(secret)
        if key.public_bytes != masking_keys[v]:
            raise ProtocolError(
                f"the recovered masking key of slot {v} does not match its advertised "
                "public key; the shares are inconsistent, nothing released"
            )
        for u in params.neighbours[v]:
            if u not in survivors:
                continue
            try:
                shared = key.exchange(masking_keys[u])
            except ValueError:
                raise ProtocolError(f"the masking public key of slot {u} is unusable") from None
            pair_key = derive_key(shared, Label.PAIRWISE_MASK, job, min(u, v), max(u, v))
            (subtract if u < v else add).append(pair_key)
    MaskApplier(params.vector_length).apply(masked_sum, add=add, subtract=subtract)
    return masked_sum
