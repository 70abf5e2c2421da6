"""Which two generators an annotator compares next.

Pure numpy and scipy, no Django: the voting code builds a :class:`SamplerState` from stored data
(vote counts per pair, the ratings of the latest stored Bradley-Terry fit) and calls
:func:`pick_pair`. A pick never refits; the ratings are refreshed whenever they are recomputed.

Samplers (``SAMPLERS``):

- ``uniform``: every eligible pair equally likely.
- ``active``: spend votes where they settle the ranking. Generators with fewer than
  ``min_votes`` votes come first, so a new generator is placed before anything else.
  Otherwise a share ``explore`` of picks is uniform, so every pair keeps receiving votes and a
  wrong fit cannot starve a pair; the rest is drawn in proportion to :func:`pair_scores`,
  which favours close pairs whose order is still open. The variance of each difference comes
  from the Fisher information at the stored ratings and the given counts (counts newer than
  the fit are taken into account as they are). Drawing in proportion rather than taking the
  best pair keeps one pair from taking every vote between two refreshes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.sparse import csr_array
from scipy.sparse.csgraph import connected_components
from scipy.special import ndtr

SAMPLERS = ("uniform", "active")

ELO_PER_LOGIT = 400.0 / math.log(10.0)
"""Elo points per unit of natural log-odds (base 10, scale 400)."""

MIN_VOTES = 10
"""Votes a generator needs before it leaves the new-generator priority of ``active``."""

EXPLORE = 0.1
"""Share of ``active`` picks drawn uniformly over the eligible pairs."""


class NoPairAvailable(Exception):
    """No eligible pair of distinct generators is left for this pick."""


@dataclass
class SamplerState:
    """What a pick needs, built cheaply from stored data.

    ``counts`` is the symmetric (n, n) matrix of votes per pair so far (ties included);
    ``ratings`` (Elo scale, NaN for generators without a rating) and ``stderr`` (Elo points,
    see :func:`bt_standard_errors`) come from the latest stored fit. The samplers need only
    ``counts`` and ``ratings``: ``active`` recomputes the variance of every pair's difference
    from both, which per-generator errors cannot give, and ``stderr`` is carried for display.
    """

    n: int
    counts: np.ndarray
    ratings: np.ndarray | None = None
    stderr: np.ndarray | None = None


@lru_cache(maxsize=64)
def _pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    i, j = np.triu_indices(n, 1)
    i.setflags(write=False)
    j.setflags(write=False)
    return i, j


def _pq(diff: np.ndarray) -> np.ndarray:
    """p(1-p) for the win probability p of an Elo difference (base 10, scale 400)."""
    odds = np.power(10.0, -np.abs(diff) / 400.0)
    return odds / (1.0 + odds) ** 2


def _connected(adj: np.ndarray) -> bool:
    """Whether a boolean adjacency matrix is one connected graph."""
    return connected_components(csr_array(adj), directed=False, return_labels=False) == 1


def bt_covariance(n: int, counts: np.ndarray, ratings: np.ndarray | None) -> np.ndarray:
    """Covariance (Elo points squared) of Bradley-Terry ratings from the Fisher information.

    Each vote on (i, j) carries information p(1-p) about r_i - r_j in logits, with p the fitted
    win probability (a tie counts as one vote, half a win each way). The information matrix is
    a weighted graph Laplacian L, singular along the common shift of all ratings; its
    pseudo-inverse, inv(L + 1/m) - 1/m over the m rated generators, is the covariance under the
    sum-to-zero constraint that centres the fit. Generators without a rating, and every rated
    one when the compared pairs do not connect them all (their offsets are then not
    identified), get infinite variance.
    """
    counts = np.asarray(counts, dtype=float)
    r = np.full(n, np.nan) if ratings is None else np.asarray(ratings, dtype=float)
    rated = np.isfinite(r) & (counts.sum(axis=1) > 0)
    m = int(np.count_nonzero(rated))
    if m < n:
        idx = np.flatnonzero(rated)
        sub, r = counts[np.ix_(idx, idx)], r[idx]
    else:
        sub = counts
    if m == 0 or (m > 1 and not _connected(sub > 0)):
        return np.full((n, n), np.inf)
    lap = sub * _pq(r[:, None] - r[None, :])
    lap = np.diag(lap.sum(axis=1)) - lap
    try:
        inv = (np.linalg.inv(lap + 1.0 / m) - 1.0 / m) * ELO_PER_LOGIT**2
    except np.linalg.LinAlgError:
        return np.full((n, n), np.inf)
    if m == n:
        return inv
    cov = np.full((n, n), np.inf)
    cov[np.ix_(idx, idx)] = inv
    return cov


def bt_standard_errors(n: int, counts: np.ndarray, ratings: np.ndarray) -> np.ndarray:
    """Per-generator standard error (Elo points) of a Bradley-Terry fit; see :func:`bt_covariance`.

    Cheap (one n x n pseudo-inverse), so the voting code refreshes it with each stored fit.
    """
    return np.sqrt(np.maximum(np.diag(bt_covariance(n, counts, ratings)), 0.0))


def pair_scores(ratings: np.ndarray, cov: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """How much one more vote on each pair (i[k], j[k]) tells about the ranking.

    With d = r_i - r_j and s^2 its variance (from ``cov``, see :func:`bt_covariance`), the
    order is wrong with probability q = P(Z > |d| / s). One vote adds information
    w = p(1-p) / ELO_PER_LOGIT^2 on d, removing a share s^2 w / (1 + s^2 w) of its variance.
    The score is q times that share: high for close pairs whose order is open, near zero for
    settled ones, and falling as 1/votes for a pair that stays tied, so no pair keeps every
    vote. Pairs with an unknown rating or an infinite variance score the maximum, 0.5.
    """
    d = ratings[i] - ratings[j]
    with np.errstate(invalid="ignore"):
        var = cov[i, i] + cov[j, j] - 2.0 * cov[i, j]
    known = np.isfinite(d) & np.isfinite(var)
    if not known.all():
        score = np.full(d.shape, 0.5)
        score[known] = pair_scores(ratings, cov, i[known], j[known])
        return score
    var = np.maximum(var, 1e-12)
    info = var * _pq(d) / ELO_PER_LOGIT**2
    return ndtr(-np.abs(d) / np.sqrt(var)) * info / (1.0 + info)


def _draw(rng: np.random.Generator, weights: np.ndarray) -> int:
    """An index drawn in proportion to ``weights``; uniform when they are all zero."""
    cum = np.cumsum(weights)
    total = cum[-1]
    if not total > 0 or not np.isfinite(total):
        return int(rng.integers(weights.size))
    return int(np.searchsorted(cum, rng.random() * total, side="right"))


def pick_pair(
    kind: str,
    state: SamplerState,
    rng: np.random.Generator,
    *,
    eligible: np.ndarray | None = None,
    min_votes: int = MIN_VOTES,
    explore: float = EXPLORE,
) -> tuple[int, int]:
    """The next pair ``(i, j)``, ``i < j``, to show; which side is left is the caller's choice.

    ``eligible`` is an optional (n, n) boolean mask of pairs usable now; a pair is usable when
    either of its two entries is true. Raises :class:`NoPairAvailable` when none is.
    ``min_votes`` and ``explore`` tune ``active`` (see the module docstring).
    """
    if kind not in SAMPLERS:
        raise ValueError(f"unknown sampler {kind!r}; expected one of {SAMPLERS}")
    n = state.n
    i, j = _pairs(n)
    if eligible is None:
        cand = np.arange(i.size)
    else:
        mask = np.asarray(eligible, dtype=bool)
        if mask.shape != (n, n):
            raise ValueError(f"eligible must have shape {(n, n)}, got {mask.shape}")
        cand = np.flatnonzero(mask[i, j] | mask[j, i])
    if cand.size == 0:
        raise NoPairAvailable("no eligible pair")
    ci, cj = i[cand], j[cand]

    if kind == "uniform" or rng.random() < explore:
        k = int(rng.integers(cand.size))
        return int(ci[k]), int(cj[k])

    votes = np.asarray(state.counts).sum(axis=1)
    deficit = np.maximum(min_votes - votes, 0)
    new = deficit[ci] + deficit[cj]
    if new.any():
        # Fill the generators short of votes first, the emptiest fastest.
        k = _draw(rng, new)
        return int(ci[k]), int(cj[k])

    if state.ratings is None:
        k = int(rng.integers(cand.size))
        return int(ci[k]), int(cj[k])
    ratings = np.asarray(state.ratings, dtype=float)
    cov = bt_covariance(n, state.counts, ratings)
    k = _draw(rng, pair_scores(ratings, cov, ci, cj))
    return int(ci[k]), int(cj[k])
