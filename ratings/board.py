"""Rules that decide what a board may claim at small n. Pure numpy: no Django, no I/O."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .bradley_terry import rank_by_interval

VOTES_NEEDED_CAP = 10
"""The votes-still-needed estimate is shown only up to this many times the votes so far;
beyond that it is an extrapolation, and the board says only that far more are needed."""


def provisional(pairwise_votes: ArrayLike, min_votes: int) -> NDArray[np.bool_]:
    """Generators with fewer than `min_votes` pairwise votes: shown, marked provisional, not ranked."""
    return np.asarray(pairwise_votes, dtype=np.float64) < max(1, int(min_votes))


def ranks_of_settled(low: ArrayLike, high: ArrayLike, settled: ArrayLike) -> NDArray[np.int64]:
    """Rank by interval among the generators that are not provisional; 0 (no rank) for the rest.

    A generator's rank is 1 + the number of ranked generators whose lower bound is above its
    upper bound.
    """
    low, high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    ok = np.asarray(settled, dtype=bool) & np.isfinite(low) & np.isfinite(high)
    ranks = np.zeros(low.size, dtype=np.int64)
    if ok.any():
        ranks[ok] = rank_by_interval(low[ok], high[ok])
    return ranks


def votes_needed(estimate: int | None, n_votes: int, *, ranked: int, provisional_count: int) -> dict:
    """What the board says about the pairwise votes still needed to settle the ranking.

    ``status`` is one of:

    * ``"too_few"``: fewer than two ranked generators, or some still provisional: no estimate;
    * ``"settled"``: every neighbouring pair is apart at 95 %;
    * ``"estimate"``: ``value`` more votes, at most VOTES_NEEDED_CAP times those so far;
    * ``"beyond"``: more than ``value`` = VOTES_NEEDED_CAP × the votes so far (the estimate
      itself would be an extrapolation from too little).
    """
    if ranked < 2 or provisional_count > 0 or estimate is None or n_votes <= 0:
        return {"status": "too_few", "value": None}
    if estimate == 0:
        return {"status": "settled", "value": 0}
    cap = VOTES_NEEDED_CAP * n_votes
    if estimate > cap:
        return {"status": "beyond", "value": cap}
    return {"status": "estimate", "value": int(estimate)}


def json_safe(x):
    """JSON-safe numbers for stored results: NaN and infinities become None, numpy scalars Python ones."""
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, np.ndarray):
        return json_safe(x.tolist())
    if isinstance(x, (np.floating, float)):
        x = float(x)
        return None if math.isnan(x) or math.isinf(x) else round(x, 6)
    if isinstance(x, np.integer):
        return int(x)
    return x
