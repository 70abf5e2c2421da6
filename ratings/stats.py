"""Summary statistics for human ratings: proportions, Likert means, position bias,
pairwise win rates, Krippendorff's alpha and Fleiss' kappa, correlations, metric pairwise
accuracy and bootstrap intervals. Pure numpy/scipy."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from functools import lru_cache

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats as sps

__all__ = [
    "binary_summary",
    "bootstrap_ci",
    "cohen_kappa",
    "cohen_kappa_table",
    "fleiss_kappa",
    "kendall_tau_b",
    "krippendorff_alpha",
    "krippendorff_alpha_ci",
    "likert_mean_interval",
    "likert_summary",
    "pairwise_accuracy",
    "pearson",
    "position_bias",
    "position_biases",
    "spearman",
    "tie_calibration",
    "wilson_interval",
    "win_rate_matrix",
]

_LEVELS = ("nominal", "ordinal", "interval", "ratio")


def _z(level: float) -> float:
    if not 0.0 < level < 1.0:
        raise ValueError("level must lie in (0, 1)")
    return _normal_quantile(0.5 + level / 2.0)


@lru_cache(maxsize=32)
def _normal_quantile(q: float) -> float:
    return float(sps.norm.ppf(q))


def wilson_interval(successes: float, n: float, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion ``successes / n``.

    ``(p + z^2/2n -/+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)`` with ``z`` the normal
    quantile for ``level``. ``(nan, nan)`` when ``n == 0``.
    """
    z = _z(level)
    if n < 0 or successes < 0 or successes > n:
        raise ValueError("need 0 <= successes <= n")
    if n == 0:
        return math.nan, math.nan
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2.0 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def binary_summary(passes: float, n: float, level: float = 0.95) -> dict[str, float]:
    """Pass rate of yes/no answers with its Wilson interval: ``{rate, low, high, n}``."""
    low, high = wilson_interval(passes, n, level)
    return {"rate": passes / n if n else math.nan, "low": low, "high": high, "n": n}


def _scores_and_counts(counts_by_score: Mapping[int, float] | ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Scores and their counts from a score -> count mapping, or from an array whose entry ``k``
    counts score ``k + 1``."""
    if isinstance(counts_by_score, Mapping):
        scores = np.array([float(s) for s in counts_by_score], dtype=np.float64)
        counts = np.array([float(c) for c in counts_by_score.values()], dtype=np.float64)
    else:
        counts = np.asarray(counts_by_score, dtype=np.float64).ravel()
        scores = np.arange(1, counts.size + 1, dtype=np.float64)
    return scores, counts


def likert_summary(counts_by_score: Mapping[int, float] | ArrayLike, level: float = 0.95) -> dict[str, float]:
    """Mean Likert score with a Student-t interval, from aggregated counts.

    ``counts_by_score`` maps score to count, or is an array whose entry ``k`` counts score
    ``k + 1`` (so five entries for a 1..5 scale). The interval is
    ``mean -/+ t_{n-1} * sd / sqrt(n)`` with the sample standard deviation (``ddof=1``);
    NaN bounds when ``n < 2``, NaN mean when ``n == 0``. Returns ``{mean, low, high, n}``.
    """
    if not 0.0 < level < 1.0:
        raise ValueError("level must lie in (0, 1)")
    scores, counts = _scores_and_counts(counts_by_score)
    if counts.size and counts.min() < 0:
        raise ValueError("counts must be non-negative")
    n = float(counts.sum())
    if n == 0:
        return {"mean": math.nan, "low": math.nan, "high": math.nan, "n": 0}
    mean = float((scores * counts).sum() / n)
    if n < 2:
        return {"mean": mean, "low": math.nan, "high": math.nan, "n": n}
    var = float((counts * (scores - mean) ** 2).sum() / (n - 1.0))
    half = float(sps.t.ppf(0.5 + level / 2.0, n - 1.0)) * math.sqrt(var / n)
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": n}


def position_bias(left_wins: int, decisive: int, level: float = 0.95) -> dict[str, float]:
    """Share of decisive votes won by the left image, its Wilson interval and the two-sided
    exact binomial test against 0.5: ``{share, low, high, n, p_value}``."""
    return position_biases([left_wins], [decisive], level)[0]


def position_biases(left_wins: ArrayLike, decisive: ArrayLike, level: float = 0.95) -> list[dict[str, float]]:
    """:func:`position_bias` of many annotators at once (one vectorised binomial test)."""
    left = np.asarray(left_wins, dtype=np.int64).ravel()
    n = np.asarray(decisive, dtype=np.int64).ravel()
    if left.shape != n.shape:
        raise ValueError("left_wins and decisive must have the same length")
    out = []
    for k, m in zip(left.tolist(), n.tolist()):
        low, high = wilson_interval(k, m, level)  # checks 0 <= k <= m
        out.append({"share": k / m if m else math.nan, "low": low, "high": high, "n": m, "p_value": 1.0})
    for row, p_value in zip(out, _binomial_test_half(left, n).tolist()):
        row["p_value"] = p_value
    return out


def _binomial_test_half(successes: NDArray[np.int64], n: NDArray[np.int64]) -> NDArray[np.float64]:
    """Two-sided exact binomial test of ``successes`` in ``n`` trials against 1/2, elementwise:
    the probability of every outcome no likelier than the one seen, from both tails (what
    ``scipy.stats.binomtest`` gives; the distribution is symmetric, so the tails mirror). 1 when
    ``n == 0``."""
    k = np.minimum(successes, n - successes)
    with np.errstate(invalid="ignore", divide="ignore"):
        tails = sps.binom.cdf(k, n, 0.5) + sps.binom.sf(n - k - 1, n, 0.5)
    return np.where(2 * k == n, 1.0, np.minimum(1.0, tails))


def win_rate_matrix(
    n: int,
    idx_a: ArrayLike,
    idx_b: ArrayLike,
    wins_a: ArrayLike,
    wins_b: ArrayLike,
    ties: ArrayLike,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Pairwise win rates from aggregated counts.

    Returns ``(win_rate, counts)``, both ``(n, n)``: ``counts[i, j]`` is the number of votes
    between ``i`` and ``j`` (symmetric) and ``win_rate[i, j] = (wins of i over j + ties / 2) /
    counts[i, j]``, NaN where there are no votes (always on the diagonal).
    """
    a = np.asarray(idx_a).astype(np.intp, copy=False).ravel()
    b = np.asarray(idx_b).astype(np.intp, copy=False).ravel()
    wa = np.asarray(wins_a, dtype=np.float64).ravel()
    wb = np.asarray(wins_b, dtype=np.float64).ravel()
    t = np.asarray(ties, dtype=np.float64).ravel()
    if not a.shape == b.shape == wa.shape == wb.shape == t.shape:
        raise ValueError("idx_a, idx_b, wins_a, wins_b and ties must have the same length")
    if a.size and (min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= n):
        raise ValueError(f"generator indices must lie in [0, {n})")
    keep = a != b
    a, b, wa, wb, t = a[keep], b[keep], wa[keep], wb[keep], t[keep]
    won = np.zeros((n, n))
    np.add.at(won, (a, b), wa + 0.5 * t)
    np.add.at(won, (b, a), wb + 0.5 * t)
    counts = won + won.T
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(counts > 0, won / counts, np.nan)
    return rate, counts


def krippendorff_alpha(reliability_data: ArrayLike, level_of_measurement: str = "interval") -> float:
    """Krippendorff's alpha from a raters x units array with NaN for missing values.

    Built from the coincidence matrix ``o_ck = sum_u sum_{i != j in u} [v_i=c][v_j=k] / (m_u - 1)``
    over units with ``m_u >= 2`` values: ``alpha = 1 - (n - 1) * sum o_ck d_ck / sum n_c n_k d_ck``
    with ``n_c = sum_k o_ck``, ``n = sum n_c`` and the squared difference ``d_ck``:
    ``nominal`` ``[c != k]``; ``ordinal`` ``(sum_{g=c..k} n_g - (n_c + n_k) / 2)^2``;
    ``interval`` ``(c - k)^2``; ``ratio`` ``((c - k) / (c + k))^2``. NaN when fewer than two
    pairable values or no variation at all.
    """
    if level_of_measurement not in _LEVELS:
        raise ValueError(f"level_of_measurement must be one of {', '.join(_LEVELS)}")
    data = np.asarray(reliability_data, dtype=np.float64)
    if data.ndim != 2:
        raise ValueError("reliability_data must be a raters x units array")
    present = ~np.isnan(data)
    values = np.unique(data[present])
    if values.size == 0:
        return math.nan
    units = np.broadcast_to(np.arange(data.shape[1]), data.shape)[present]
    codes = np.searchsorted(values, data[present])
    n_values = values.size
    per_unit = np.bincount(units * n_values + codes, minlength=data.shape[1] * n_values).reshape(
        data.shape[1], n_values
    ).astype(np.float64)
    return krippendorff_alpha_from_counts(per_unit, values, level_of_measurement)


def krippendorff_alpha_from_counts(per_unit: ArrayLike, values: ArrayLike, level_of_measurement: str = "interval") -> float:
    """Krippendorff's alpha from value counts per unit: ``per_unit[u, c]`` is how many raters gave
    unit ``u`` the value ``values[c]`` (``values`` sorted ascending).

    The same statistic as :func:`krippendorff_alpha` when every rater rates a unit at most once,
    without building the raters x units array (counts can come straight from SQL).
    """
    if level_of_measurement not in _LEVELS:
        raise ValueError(f"level_of_measurement must be one of {', '.join(_LEVELS)}")
    per_unit = np.asarray(per_unit, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if per_unit.ndim != 2 or per_unit.shape[1] != values.size or values.size == 0:
        return math.nan
    pairable = per_unit.sum(axis=1) >= 2
    coincidence = _coincidences(per_unit[pairable], np.zeros(int(pairable.sum()), dtype=np.intp), 1)[0]
    return _alpha_from_coincidence(coincidence, values, level_of_measurement)


def _coincidences(per_unit: NDArray[np.float64], group: NDArray[np.intp], groups: int) -> NDArray[np.float64]:
    """Coincidence matrices ``o_ck`` (see :func:`krippendorff_alpha`) of the pairable units
    ``per_unit`` summed per group: shape (groups, values, values). A unit adds
    ``(n_uc n_uk - [c = k] n_uc) / (m_u - 1)``, so a data set's matrix is the sum of its units'
    (or of its groups', each as often as it occurs)."""
    n_values = per_unit.shape[1]
    weighted = per_unit / (per_unit.sum(axis=1) - 1.0)[:, None]
    out = np.empty((groups, n_values, n_values))
    for c in range(n_values):
        for k in range(n_values):
            out[:, c, k] = np.bincount(group, weights=weighted[:, c] * per_unit[:, k], minlength=groups)
        out[:, c, c] -= np.bincount(group, weights=weighted[:, c], minlength=groups)
    return out


def _alpha_from_coincidence(coincidence: NDArray[np.float64], values: NDArray[np.float64], level_of_measurement: str) -> float:
    """``alpha = 1 - (n - 1) * sum o_ck d_ck / sum n_c n_k d_ck`` (see :func:`krippendorff_alpha`)."""
    n_values = values.size
    n_c = coincidence.sum(axis=0)
    n_total = n_c.sum()
    if n_total <= 1:
        return math.nan
    if level_of_measurement == "nominal":
        delta = 1.0 - np.eye(n_values)
    elif level_of_measurement == "ordinal":
        cum = np.cumsum(n_c)
        lo = np.minimum.outer(np.arange(n_values), np.arange(n_values))
        hi = np.maximum.outer(np.arange(n_values), np.arange(n_values))
        delta = (cum[hi] - cum[lo] + n_c[lo] - (n_c[lo] + n_c[hi]) / 2.0) ** 2
    elif level_of_measurement == "interval":
        delta = np.subtract.outer(values, values) ** 2
    else:
        total = np.add.outer(values, values)
        with np.errstate(invalid="ignore", divide="ignore"):
            delta = np.where(total != 0, (np.subtract.outer(values, values) / total) ** 2, 0.0)
    expected = float(n_c @ delta @ n_c)
    if expected == 0.0:
        return math.nan
    return float(1.0 - (n_total - 1.0) * float((coincidence * delta).sum()) / expected)


def votes_to_settle(
    ratings: ArrayLike, stderr: ArrayLike, n_votes: float, *, z: float = 1.96, min_gap: float = 10.0
) -> int | None:
    """Estimated further pairwise votes until every adjacent pair of the ranking is settled.

    For neighbours i, j (sorted by rating) with gap ``d = |r_i - r_j|`` and standard error of the
    gap ``s = sqrt(se_i² + se_j²)``, the pair is settled once ``d >= z·s``. Standard errors shrink
    like ``1/sqrt(votes)`` when votes keep their current spread, so the total must grow by the
    factor ``(z·s / d)²``. Gaps under ``min_gap`` Elo points are treated as ``min_gap`` (two
    generators that close are practically tied and would otherwise never settle). Returns the
    largest shortfall over adjacent pairs (0 when settled), or None without a usable fit.
    """
    r = np.asarray(ratings, dtype=np.float64)
    se = np.asarray(stderr, dtype=np.float64)
    ok = np.isfinite(r) & np.isfinite(se)
    if ok.sum() < 2 or n_votes <= 0:
        return None
    order = np.argsort(-r[ok])
    r, se = r[ok][order], se[ok][order]
    gap = np.maximum(np.abs(np.diff(r)), min_gap)
    s = np.sqrt(se[:-1] ** 2 + se[1:] ** 2)
    factor = (z * s / gap) ** 2
    return int(math.ceil(max(0.0, float(factor.max()) - 1.0) * n_votes))


def fleiss_kappa(table: ArrayLike) -> float:
    """Fleiss' kappa for many raters on a nominal scale (Fleiss 1971, "Measuring nominal scale
    agreement among many raters", Psychological Bulletin 76(5), 378-382).

    ``table[i, j]`` counts the raters who put item ``i`` in category ``j``; every item must have
    the same number ``n >= 2`` of raters, as Fleiss defines the statistic (use Krippendorff's
    alpha when the number of raters varies). With ``N`` items,
    ``p_j = sum_i table[i, j] / (N n)``, ``P_i = (sum_j table[i, j]^2 - n) / (n (n - 1))``,
    ``P = mean_i P_i`` and ``P_e = sum_j p_j^2``: ``kappa = (P - P_e) / (1 - P_e)``.
    NaN without items, or when every rating falls in one category (``P_e = 1``).
    """
    counts = np.asarray(table, dtype=np.float64)
    if counts.ndim != 2:
        raise ValueError("table must be an items x categories array of counts")
    if counts.shape[0] == 0:
        return math.nan
    if not np.all(np.isfinite(counts)) or counts.min() < 0:
        bad = int(np.argwhere(~np.isfinite(counts) | (counts < 0))[0, 0])
        raise ValueError(f"table counts must be finite and non-negative (row {bad})")
    raters = counts.sum(axis=1)
    n = raters[0]
    if not np.all(raters == n):
        bad = int(np.flatnonzero(raters != n)[0])
        raise ValueError(
            f"Fleiss' kappa needs the same number of raters for every item: row 0 has {n:g}, "
            f"row {bad} has {raters[bad]:g}"
        )
    if n < 2:
        raise ValueError(f"Fleiss' kappa needs at least 2 raters per item, the table has {n:g}")
    items = counts.shape[0]
    p_j = counts.sum(axis=0) / (items * n)
    p_i = ((counts * counts).sum(axis=1) - n) / (n * (n - 1.0))
    p_e = float(p_j @ p_j)
    if p_e >= 1.0:
        return math.nan
    return float((p_i.mean() - p_e) / (1.0 - p_e))


def cohen_kappa_table(table: ArrayLike) -> float:
    """Cohen's kappa of two raters from their confusion table (Cohen 1960, "A coefficient of
    agreement for nominal scales", Educational and Psychological Measurement 20(1), 37-46).

    ``table[i, j]`` counts the items rater A put in category ``i`` and rater B in ``j``. With
    ``N`` items, ``p_o = trace / N`` and ``p_e = sum_k (row_k / N)(col_k / N)``:
    ``kappa = (p_o - p_e) / (1 - p_e)``. Unweighted (nominal). NaN without items, or when
    chance agreement is 1 (both raters always use one and the same category).
    """
    counts = np.asarray(table, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"table must be a square categories x categories array, got shape {counts.shape}")
    if not np.all(np.isfinite(counts)) or (counts.size and counts.min() < 0):
        raise ValueError("table counts must be finite and non-negative")
    n = counts.sum()
    if n == 0:
        return math.nan
    p_o = float(np.trace(counts)) / n
    p_e = float(counts.sum(axis=1) @ counts.sum(axis=0)) / (n * n)
    if p_e >= 1.0:
        return math.nan
    return (p_o - p_e) / (1.0 - p_e)


def cohen_kappa(a: ArrayLike, b: ArrayLike) -> float:
    """Cohen's kappa between two raters' labels of the same items (any hashable labels; the
    categories are those either rater used). See :func:`cohen_kappa_table`."""
    x, y = np.asarray(a), np.asarray(b)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"a and b must be 1-D of the same length, got shapes {x.shape} and {y.shape}")
    if x.size == 0:
        return math.nan
    labels, codes = np.unique(np.concatenate([x, y]), return_inverse=True)
    table = np.zeros((labels.size, labels.size))
    np.add.at(table, (codes[: x.size], codes[x.size :]), 1)
    return cohen_kappa_table(table)


def _paired(x: ArrayLike, y: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Two aligned 1-D float arrays with the pairs holding a NaN dropped."""
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"x and y must be 1-D of the same length, got shapes {a.shape} and {b.shape}")
    if np.isinf(a).any() or np.isinf(b).any():
        raise ValueError("x and y must not contain infinite values")
    keep = ~(np.isnan(a) | np.isnan(b))
    return a[keep], b[keep]


def _correlatable(a: NDArray[np.float64], b: NDArray[np.float64]) -> bool:
    return a.size >= 3 and not np.all(a == a[0]) and not np.all(b == b[0])


def pearson(x: ArrayLike, y: ArrayLike) -> float:
    """Pearson's product-moment correlation (Pearson 1895):
    ``sum (x - mean x)(y - mean y) / sqrt(sum (x - mean x)^2 sum (y - mean y)^2)``.

    The conventions shared by :func:`pearson`, :func:`spearman` and :func:`kendall_tau_b`:
    pairs where either value is NaN are dropped; NaN when fewer than 3 pairs remain or either
    side is constant; infinite values are an error.
    """
    a, b = _paired(x, y)
    if not _correlatable(a, b):
        return math.nan
    da, db = a - a.mean(), b - b.mean()
    r = float(da @ db) / math.sqrt(float(da @ da) * float(db @ db))
    return max(-1.0, min(1.0, r))


def spearman(x: ArrayLike, y: ArrayLike) -> float:
    """Spearman's rank correlation (Spearman 1904): Pearson's r of the ranks, tied values
    sharing their average rank. Conventions as :func:`pearson`."""
    a, b = _paired(x, y)
    if not _correlatable(a, b):
        return math.nan
    return pearson(sps.rankdata(a), sps.rankdata(b))


def kendall_tau_b(x: ArrayLike, y: ArrayLike) -> float:
    """Kendall's tau-b (Kendall 1945, "The treatment of ties in ranking problems"):
    ``(C - D) / sqrt((n0 - n1)(n0 - n2))`` over all pairs, with ``C``/``D`` the concordant and
    discordant pairs, ``n0 = n(n-1)/2`` and ``n1``, ``n2`` the pairs tied in x and in y.
    Computed by scipy's O(n log n) algorithm. Conventions as :func:`pearson`."""
    a, b = _paired(x, y)
    if not _correlatable(a, b):
        return math.nan
    return float(sps.kendalltau(a, b, variant="b").statistic)


def _pairwise_inputs(human: ArrayLike, metric_diff: ArrayLike) -> tuple[NDArray[np.int8], NDArray[np.float64]]:
    h = np.asarray(human, dtype=np.float64)
    d = np.asarray(metric_diff, dtype=np.float64)
    if h.ndim != 1 or h.shape != d.shape:
        raise ValueError(
            f"human and metric_diff must be 1-D of the same length, got shapes {h.shape} and {d.shape}"
        )
    bad = np.flatnonzero((h != 1) & (h != -1) & (h != 0))
    if bad.size:
        raise ValueError(f"human labels must be +1, -1 or 0; position {int(bad[0])} holds {float(h[bad[0]])!r}")
    bad = np.flatnonzero(~np.isfinite(d))
    if bad.size:
        raise ValueError(f"metric_diff must be finite; position {int(bad[0])} holds {float(d[bad[0]])!r}")
    return h.astype(np.int8), d


def tie_calibration(human: ArrayLike, metric_diff: ArrayLike) -> tuple[float, float]:
    """Tie-calibrated pairwise accuracy and its tie threshold: ``(accuracy, epsilon)``.

    Deutsch, Foster & Freitag (2023), "Ties Matter: Meta-Evaluating Modern Metrics with Pairwise
    Accuracy and Tie Calibration" (EMNLP; arXiv:2305.14324), the ``acc_23`` statistic of their
    ``tau_optimization`` (google-research/mt-metrics-eval). For a threshold ``epsilon`` the
    metric says "tie" when ``|metric_diff| <= epsilon`` and ``sign(metric_diff)`` otherwise; the
    accuracy is the share of pairs whose metric label equals the human label (+1, -1, or 0 for
    a human tie, which is kept: a metric tie on a human tie is correct). It is maximised over the
    candidate thresholds 0 and every distinct ``|metric_diff|``; among equal maxima the smallest
    threshold wins, as in the reference code.

    Sort-based, O(n log n): turning pair ``p`` into a metric tie changes the number of correct
    pairs by ``[human_p = 0] - [human_p = sign(diff_p)]``; sorting by ``|diff|`` and summing these
    changes gives the count at every candidate at once. ``(nan, nan)`` without pairs.
    """
    h, d = _pairwise_inputs(human, metric_diff)
    if h.size == 0:
        return math.nan, math.nan
    correct_untied = (h == np.sign(d)).astype(np.int64)
    gain = (h == 0).astype(np.int64) - correct_untied
    size = np.abs(d)
    order = np.argsort(size, kind="stable")
    size, cumulative = size[order], np.cumsum(gain[order])
    last_of_value = np.flatnonzero(np.append(size[1:] != size[:-1], True))
    thresholds = np.concatenate(([0.0], size[last_of_value]))
    correct = int(correct_untied.sum()) + np.concatenate(([0], cumulative[last_of_value]))
    best = int(np.argmax(correct))
    return float(correct[best] / h.size), float(thresholds[best])


def pairwise_accuracy(human: ArrayLike, metric_diff: ArrayLike, *, ties: str = "calibrated") -> float:
    """Share of pairs the metric orders as the humans did.

    ``human[p]`` is +1 when the humans preferred the first item of pair ``p``, -1 the second and
    0 for a tie; ``metric_diff[p]`` is the metric's first-minus-second score difference (negate
    it for a lower-is-better metric).

    - ``ties="calibrated"`` (default): Deutsch et al. (2023)'s tie-calibrated accuracy, human ties
      kept and the metric's ties set by the best threshold; see :func:`tie_calibration`.
    - ``ties="exclude"``: drop pairs with a human tie or an exact metric tie, then the share where
      the signs agree, ``C / (C + D)``; NaN when no pair is left. Rewards coarse metrics, which
      can tie their hard cases away; kept for comparison with older reports.

    NaN without pairs.
    """
    if ties == "calibrated":
        return tie_calibration(human, metric_diff)[0]
    if ties != "exclude":
        raise ValueError('ties must be "calibrated" or "exclude"')
    h, d = _pairwise_inputs(human, metric_diff)
    keep = (h != 0) & (d != 0)
    if not keep.any():
        return math.nan
    return float(np.mean(h[keep] == np.sign(d[keep])))


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError("level must lie in (0, 1)")


def _percentile_bounds(replicates: NDArray[np.float64], level: float) -> tuple[float, float]:
    finite = replicates[np.isfinite(replicates)]
    if finite.size == 0 or 2 * finite.size < replicates.size:
        return math.nan, math.nan
    low, high = np.quantile(finite, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return float(low), float(high)


def bootstrap_ci(
    statistic: Callable[..., float],
    *arrays: ArrayLike,
    clusters: ArrayLike | None = None,
    rounds: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval ``(low, high)`` of ``statistic(*arrays)`` (Efron &
    Tibshirani 1993, "An Introduction to the Bootstrap", ch. 13).

    ``arrays`` are aligned along their first axis (rows: votes, pairs, outputs). Each round
    draws rows with replacement, as many as there are, or with ``clusters`` (one label per row,
    e.g. the prompt id) draws whole clusters with replacement, as many as there are, and keeps
    every row of each drawn cluster: the cluster bootstrap (Davison & Hinkley 1997, "Bootstrap
    Methods and their Application", sec. 3.8), honest when rows of one cluster are correlated.
    The bounds are the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the replicates.
    Replicates where the statistic is NaN are dropped; when more than half are NaN (or fewer than
    2 rows or clusters exist) the bounds are NaN. Deterministic for a given ``seed``.
    """
    _check_level(level)
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    if not arrays:
        raise ValueError("bootstrap_ci needs at least one array")
    data = [np.asarray(a) for a in arrays]
    if any(a.ndim == 0 for a in data):
        raise ValueError("arrays must have at least one dimension")
    n = data[0].shape[0]
    if any(a.shape[0] != n for a in data):
        raise ValueError(f"arrays must have the same length, got {[a.shape[0] for a in data]}")
    codes, groups = _resampling_groups(n, clusters)
    if groups < 2:
        return math.nan, math.nan
    replicates = np.empty(int(rounds))
    if clusters is None:
        for r, rows in enumerate(_resamples(groups, int(rounds), seed)):
            replicates[r] = statistic(*(a[rows] for a in data))
        return _percentile_bounds(replicates, level)
    by_cluster = np.argsort(codes, kind="stable")
    sizes = np.bincount(codes, minlength=groups)
    starts = np.cumsum(sizes) - sizes
    for r, drawn in enumerate(_resamples(groups, int(rounds), seed)):
        lengths = sizes[drawn]
        ends = np.cumsum(lengths)
        rows = by_cluster[np.repeat(starts[drawn] - (ends - lengths), lengths) + np.arange(ends[-1])]
        replicates[r] = statistic(*(a[rows] for a in data))
    return _percentile_bounds(replicates, level)


def _resampling_groups(n: int, clusters: ArrayLike | None) -> tuple[NDArray[np.intp], int]:
    """What a bootstrap round draws, for ``n`` rows: each row's group (its cluster's index among
    the sorted labels, or the row itself without clusters) and the number of groups."""
    if clusters is None:
        return np.arange(n), n
    labels = np.asarray(clusters)
    if labels.ndim != 1 or labels.shape[0] != n:
        raise ValueError(f"clusters must hold one label per row ({n}), got shape {labels.shape}")
    _, codes = np.unique(labels, return_inverse=True)
    codes = codes.ravel()
    return codes, int(codes.max()) + 1 if n else 0


def _resamples(groups: int, rounds: int, seed: int):
    """The groups each bootstrap round draws: as many as there are, with replacement."""
    rng = np.random.default_rng(seed)
    for _ in range(rounds):
        yield rng.integers(0, groups, groups)


def krippendorff_alpha_ci(
    per_unit_counts: ArrayLike,
    values: ArrayLike,
    level_of_measurement: str = "interval",
    clusters: ArrayLike | None = None,
    rounds: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval for Krippendorff's alpha, resampling units (or clusters of
    units, e.g. the prompts the items came from) as :func:`bootstrap_ci` does (the same draws for
    the same seed) and recomputing :func:`krippendorff_alpha_from_counts` each round.

    Units with fewer than 2 values carry no pairable information and are left out before
    resampling. (Hayes & Krippendorff 2007 resample pairable values instead; resampling units
    keeps each unit's raters together, which is what a new sample of items would look like.)
    NaN bounds with fewer than 2 pairable units or clusters.
    """
    if level_of_measurement not in _LEVELS:
        raise ValueError(f"level_of_measurement must be one of {', '.join(_LEVELS)}")
    counts = np.asarray(per_unit_counts, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[1] != values.size:
        raise ValueError("per_unit_counts must be units x values, one column per entry of values")
    _check_level(level)
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    pairable = counts.sum(axis=1) >= 2
    labels = None
    if clusters is not None:
        labels = np.asarray(clusters)
        if labels.shape != (counts.shape[0],):
            raise ValueError(f"clusters must hold one label per unit ({counts.shape[0]}), got shape {labels.shape}")
        labels = labels[pairable]
    codes, groups = _resampling_groups(int(pairable.sum()), labels)
    if groups < 2:
        return math.nan, math.nan
    # A resample's coincidence matrix is the sum of its groups' (each as often as drawn), so
    # each round costs a weighted sum of small matrices, not a pass over every unit.
    per_group = _coincidences(counts[pairable], codes, groups).reshape(groups, -1)
    shape = (values.size, values.size)
    replicates = np.array([
        _alpha_from_coincidence((np.bincount(drawn, minlength=groups) @ per_group).reshape(shape), values, level_of_measurement)
        for drawn in _resamples(groups, int(rounds), seed)
    ])
    return _percentile_bounds(replicates, level)


def likert_mean_interval(
    counts_by_score: Mapping[int, float] | ArrayLike, level: float = 0.95, rounds: int = 2000, seed: int = 0
) -> tuple[float, float, float, int]:
    """Mean rating with a percentile bootstrap interval from the counts: ``(mean, low, high, n)``.

    ``counts_by_score`` as in :func:`likert_summary` (score -> count, or an array whose entry
    ``k`` counts score ``k + 1``), whole non-negative counts. Each round draws ``n`` ratings from
    the observed score shares (a multinomial draw, the percentile bootstrap of Efron &
    Tibshirani 1993, ch. 13, done on counts). Every resampled mean is an average of observed
    scores, so the interval never leaves the range of the scores given, hence never leaves a 1-5
    scale, unlike the Student-t interval (ratings 1, 5, 5 give t bounds -2.07 and 9.40). For
    large ``n`` it agrees with the t-interval. When every rating is the same the interval has no
    width: read it with its ``n``. NaN mean and bounds for ``n == 0``; NaN bounds for ``n == 1``.
    """
    _check_level(level)
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    scores, counts = _scores_and_counts(counts_by_score)
    if counts.size and (counts.min() < 0 or not np.all(counts == np.round(counts))):
        raise ValueError("counts must be whole non-negative numbers")
    n = int(counts.sum())
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    mean = float(scores @ counts / n)
    if n == 1:
        return mean, math.nan, math.nan, 1
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, counts / n, size=int(rounds))
    replicate_means = draws @ scores / n
    low, high = np.quantile(replicate_means, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    lowest, highest = scores[counts > 0].min(), scores[counts > 0].max()
    return mean, float(max(low, lowest)), float(min(high, highest)), n
