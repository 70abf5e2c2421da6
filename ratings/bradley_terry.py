"""Bradley-Terry ratings from pairwise votes, with a fast multinomial bootstrap.

Model and conventions (FastChat's ``compute_mle_elo`` / ``compute_bt``):

* ``P(i beats j) = 1 / (1 + base ** ((r_j - r_i) / scale))`` with ``base=10``, ``scale=400``,
  i.e. ``P(i beats j) = s_i / (s_i + s_j)`` for strengths ``s_i = base ** (r_i / scale)``.
* A tie (including "both bad") counts as half a win for each side.
* Ratings are maximum-likelihood estimates, centred so that their mean over the generators
  that have votes is ``init_rating``, or shifted so that generator ``anchor`` has
  ``anchor_rating``. Generators without votes get NaN.

Existence of the estimate: the maximum-likelihood estimate is finite and unique exactly when
the directed "i won (at least half a vote) against j" graph over the voted generators is
strongly connected. When it is not (perfect separation, or several components that never
met), a symmetric prior of :data:`PRIOR_TIES_PER_PAIR` virtual tied votes is added between
every pair of voted generators, and the maximum a-posteriori estimate is returned. It is
finite, keeps the order implied by the data, places separated generators far apart
(about ``scale * log_base(2 * w / PRIOR_TIES_PER_PAIR)`` for ``w`` unanswered wins, over
1000 Elo points for a handful) and puts components that never met on a common level. Data that already determine a finite estimate are fitted without a prior.

The fit is a damped Newton method on the log-likelihood, vectorised over bootstrap rounds.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "PRIOR_TIES_PER_PAIR",
    "aggregate_pairs",
    "bootstrap_bt",
    "bootstrap_bt_clusters",
    "fit_bt",
    "intervals",
    "rank_by_interval",
    "win_probability",
]

PRIOR_TIES_PER_PAIR = 1e-3
"""Virtual tied votes added between every pair of voted generators when the data alone do
not determine a finite estimate."""

_MAX_ITER = 200
_TOL = 1e-8
_MAX_STEP = 8.0
_ROUND_BLOCK_ELEMENTS = 250_000


def aggregate_pairs(
    n: int,
    idx_a: ArrayLike,
    idx_b: ArrayLike,
    wins_a: ArrayLike,
    wins_b: ArrayLike,
    ties: ArrayLike,
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Merge rows into one row per unordered pair ``(i, j)`` with ``i < j``.

    Returns ``(i, j, wins_i, wins_j, ties)``. Rows may come in either orientation and repeat;
    rows with ``idx_a == idx_b`` carry no information and are dropped.
    """
    a = np.asarray(idx_a).astype(np.intp, copy=False).ravel()
    b = np.asarray(idx_b).astype(np.intp, copy=False).ravel()
    wa = np.asarray(wins_a, dtype=np.float64).ravel()
    wb = np.asarray(wins_b, dtype=np.float64).ravel()
    t = np.asarray(ties, dtype=np.float64).ravel()
    if not (a.shape == b.shape == wa.shape == wb.shape == t.shape):
        raise ValueError("idx_a, idx_b, wins_a, wins_b and ties must have the same length")
    if a.size and (a.min() < 0 or b.min() < 0 or a.max() >= n or b.max() >= n):
        raise ValueError(f"generator indices must lie in [0, {n})")
    for counts in (wa, wb, t):
        if counts.size and not (math.isfinite(float(counts.sum())) and counts.min() >= 0):
            raise ValueError("vote counts must be finite and non-negative")
    if n * n <= max(4 * a.size, 1 << 20):
        key = a * n + b
        won_a = np.bincount(key, weights=wa, minlength=n * n).reshape(n, n)
        won_b = np.bincount(key, weights=wb, minlength=n * n).reshape(n, n)
        tied = np.bincount(key, weights=t, minlength=n * n).reshape(n, n)
        won = won_a + won_b.T
        tied = tied + tied.T
        lo, hi = np.triu_indices(n, k=1)
        sum_lo, sum_hi, sum_t = won[lo, hi], won[hi, lo], tied[lo, hi]
    else:
        keep = a != b
        a, b, wa, wb, t = a[keep], b[keep], wa[keep], wb[keep], t[keep]
        swap = a > b
        keys, inverse = np.unique(np.where(swap, b * n + a, a * n + b), return_inverse=True)
        sum_lo = np.bincount(inverse, weights=np.where(swap, wb, wa), minlength=keys.size)
        sum_hi = np.bincount(inverse, weights=np.where(swap, wa, wb), minlength=keys.size)
        sum_t = np.bincount(inverse, weights=t, minlength=keys.size)
        lo, hi = keys // n, keys % n
    nonzero = (sum_lo + sum_hi + sum_t) > 0
    return (
        lo[nonzero].astype(np.intp),
        hi[nonzero].astype(np.intp),
        sum_lo[nonzero],
        sum_hi[nonzero],
        sum_t[nonzero],
    )


def _active(n: int, pi: NDArray, pj: NDArray, games: NDArray) -> NDArray[np.bool_]:
    """(R, n) mask of generators with at least one vote in each round of ``games`` (R, m)."""
    played = (games > 0).astype(np.float64)
    return _to_generators(played, pi, pj, n, signed=False) > 0


def _to_generators(values: NDArray, pi: NDArray, pj: NDArray, n: int, *, signed: bool) -> NDArray:
    """(R, n) per-generator sums of per-pair ``values`` (R, m): each pair adds its value at
    ``pi`` and adds it (or, when ``signed``, subtracts it) at ``pj``. Pairs are distinct, so
    the values are laid out in an (R, n, n) array (the size of the Newton system) and summed."""
    square = np.zeros((values.shape[0], n * n))
    square[:, pi * n + pj] = values
    square[:, pj * n + pi] = -values if signed else values
    return square.reshape(-1, n, n).sum(axis=2)


def _expit(x: ArrayLike) -> NDArray[np.float64]:
    """The logistic function ``1 / (1 + exp(-x))``, without overflow for large ``|x|``."""
    x = np.asarray(x, dtype=np.float64)
    z = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + z), z / (1.0 + z))


def _strongly_connected(
    n: int, pi: NDArray, pj: NDArray, w_ij: NDArray, w_ji: NDArray, active: NDArray
) -> NDArray[np.bool_]:
    """Per round (R,): whether the "won against" graph on the active generators is strongly
    connected, i.e. every active generator is reached from the first one along wins and
    along losses (breadth-first search on all rounds at once)."""
    rounds = w_ij.shape[0]
    beat = np.zeros((rounds, n, n), dtype=np.float32)
    beat[:, pi, pj] = w_ij > 0
    beat[:, pj, pi] = np.maximum(beat[:, pj, pi], w_ji > 0)
    source = np.zeros((rounds, 1, n), dtype=np.float32)
    source[np.arange(rounds), 0, np.argmax(active, axis=1)] = 1.0
    result = np.ones(rounds, dtype=bool)
    for graph in (beat, beat.transpose(0, 2, 1)):
        seen = source.copy()
        for _ in range(n):
            grown = np.minimum(seen + seen @ graph, 1.0)
            if np.array_equal(grown, seen):
                break
            seen = grown
        result &= np.all((seen[:, 0, :] > 0) | ~active, axis=1)
    return result


def _objective(theta: NDArray, pi: NDArray, pj: NDArray, games: NDArray, w_ji: NDArray) -> tuple[NDArray, NDArray]:
    """Log-likelihood per round, ``sum_pairs w_ij log s(d) + w_ji log s(-d)`` with
    ``d = theta_i - theta_j`` and ``s`` the logistic function, and the (R, m) matrix ``s(d)``."""
    diff = theta[:, pi] - theta[:, pj]
    prob = _expit(diff)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_prob = np.where(prob > 0.0, np.log(prob), diff)
    value = (games * log_prob).sum(axis=1) - (w_ji * diff).sum(axis=1)
    return value, prob


def _newton(
    n: int, pi: NDArray, pj: NDArray, w_ij: NDArray, w_ji: NDArray, active: NDArray, theta: NDArray
) -> NDArray:
    """Maximise the BT log-likelihood of every round at once, in natural log-strengths.

    ``w_ij[r, p]`` is the (fractional) number of wins of ``pi[p]`` over ``pj[p]`` in round
    ``r``; every round must have a finite optimum. Each step solves ``(L + a a^T) d = g``
    where ``L`` is the observed information (a weighted graph Laplacian) and ``a`` the active
    indicator: the minimum-norm Newton step, which keeps the mean of active log-strengths
    fixed. Steps longer than ``_MAX_STEP`` are shortened and halved until the likelihood rises.
    A round stops once its step is below ``_TOL`` (relative); by quadratic convergence the
    remaining error is then of the order of the step squared.
    """
    rounds = w_ij.shape[0]
    games = w_ij + w_ji
    act = active.astype(np.float64)
    upper, lower, diagonal = pi * n + pj, pj * n + pi, np.arange(n) * (n + 1)
    theta = np.where(active, theta, 0.0)
    theta = theta - (theta * act).sum(1, keepdims=True) / np.maximum(act.sum(1, keepdims=True), 1.0)
    value, prob_all = _objective(theta, pi, pj, games, w_ji)
    todo = np.arange(rounds)
    for _ in range(_MAX_ITER):
        if todo.size == 0:
            break
        th = theta[todo]
        g = games[todo]
        wji = w_ji[todo]
        prob = prob_all[todo]
        grad = _to_generators(w_ij[todo] - g * prob, pi, pj, n, signed=True)
        info = g * prob * (1.0 - prob)
        a = act[todo]
        lap = np.zeros((todo.size, n * n))
        lap[:, upper] = -info
        lap[:, lower] = -info
        lap[:, diagonal] = _to_generators(info, pi, pj, n, signed=False) + (1.0 - a)
        lap = lap.reshape(todo.size, n, n) + a[:, :, None] * a[:, None, :]
        step = np.linalg.solve(lap, grad[:, :, None])[:, :, 0]
        size = np.abs(step).max(axis=1)
        step *= np.minimum(1.0, _MAX_STEP / np.maximum(size, 1e-300))[:, None]
        old = value[todo]
        new_theta = th + step
        new_value, new_prob = _objective(new_theta, pi, pj, g, wji)
        for _ in range(60):
            worse = new_value < old - 1e-12 * np.abs(old)
            if not worse.any():
                break
            step[worse] *= 0.5
            new_theta[worse] = th[worse] + step[worse]
            new_value[worse], new_prob[worse] = _objective(new_theta[worse], pi, pj, g[worse], wji[worse])
        theta[todo] = new_theta
        value[todo] = new_value
        prob_all[todo] = new_prob
        done = np.abs(step).max(axis=1) <= _TOL * np.maximum(1.0, np.abs(new_theta).max(axis=1))
        todo = todo[~done]
    return theta


def _fit_rounds(
    n: int,
    pi: NDArray,
    pj: NDArray,
    w_ij: NDArray,
    w_ji: NDArray,
    theta0: NDArray,
) -> tuple[NDArray, NDArray]:
    """Fit each round of (R, m) win counts; returns log-strengths and the active mask, both (R, n).

    Rounds whose "won against" graph is not strongly connected are fitted with the symmetric
    prior of ``PRIOR_TIES_PER_PAIR`` ties between every pair of their active generators.
    """
    rounds = w_ij.shape[0]
    active = _active(n, pi, pj, w_ij + w_ji)
    needs_prior = ~_strongly_connected(n, pi, pj, w_ij, w_ji, active)
    theta = np.zeros((rounds, n))
    plain = ~needs_prior
    if plain.any():
        theta[plain] = _newton(n, pi, pj, w_ij[plain], w_ji[plain], active[plain], theta0[plain])
    if needs_prior.any():
        ci, cj = np.triu_indices(n, k=1)
        position = pi * n - pi * (pi + 1) // 2 + (pj - pi - 1)
        act = active[needs_prior]
        extra = 0.5 * PRIOR_TIES_PER_PAIR * (act[:, ci] & act[:, cj])
        all_ij = extra.copy()
        all_ji = extra.copy()
        all_ij[:, position] += w_ij[needs_prior]
        all_ji[:, position] += w_ji[needs_prior]
        theta[needs_prior] = _newton(n, ci, cj, all_ij, all_ji, act, theta0[needs_prior])
    return theta, active


def _to_ratings(
    theta: NDArray,
    active: NDArray,
    *,
    base: float,
    scale: float,
    init_rating: float,
    anchor: int | None,
    anchor_rating: float,
) -> NDArray:
    """Natural log-strengths (R, n) to Elo-scale ratings, centred or anchored per round."""
    ratings = np.where(active, theta * (scale / math.log(base)), np.nan)
    if anchor is None:
        count = active.sum(axis=1, keepdims=True)
        centre = np.where(active, ratings, 0.0).sum(axis=1, keepdims=True) / np.maximum(count, 1)
        return ratings - centre + init_rating
    return ratings - ratings[:, [anchor]] + anchor_rating


def _check_anchor(anchor: int | None, n: int) -> None:
    if anchor is not None and not 0 <= anchor < n:
        raise ValueError(f"anchor must be a generator index in [0, {n})")


def fit_bt(
    n: int,
    idx_a: ArrayLike,
    idx_b: ArrayLike,
    wins_a: ArrayLike,
    wins_b: ArrayLike,
    ties: ArrayLike,
    *,
    base: float = 10.0,
    scale: float = 400.0,
    init_rating: float = 1000.0,
    anchor: int | None = None,
    anchor_rating: float = 1000.0,
) -> NDArray[np.float64]:
    """Maximum-likelihood Bradley-Terry ratings on the Elo scale, shape ``(n,)``.

    Inputs are aggregated per pair: row ``k`` says generator ``idx_a[k]`` beat ``idx_b[k]``
    ``wins_a[k]`` times, lost ``wins_b[k]`` times and tied ``ties[k]`` times (a tie is half a
    win each way). Rows may repeat and come in either orientation. The rating is
    ``scale * log_base(s_i)`` for the ML strengths ``s``, centred so the mean over voted
    generators is ``init_rating``, or shifted so ``anchor`` has ``anchor_rating``.
    Generators without votes are NaN. See the module docstring for non-identifiable data.
    """
    _check_anchor(anchor, n)
    pi, pj, c_ij, c_ji, c_t = aggregate_pairs(n, idx_a, idx_b, wins_a, wins_b, ties)
    w_ij = (c_ij + 0.5 * c_t)[None]
    w_ji = (c_ji + 0.5 * c_t)[None]
    theta, active = _fit_rounds(n, pi, pj, w_ij, w_ji, np.zeros((1, n)))
    if anchor is not None and not active[0, anchor]:
        raise ValueError(f"anchor generator {anchor} has no votes")
    return _to_ratings(
        theta, active, base=base, scale=scale, init_rating=init_rating, anchor=anchor, anchor_rating=anchor_rating
    )[0]


def _bootstrap_options(n: int, fit_kwargs: dict) -> dict[str, Any]:
    """The fit options of a bootstrap (those of :func:`fit_bt`), checked."""
    allowed = {"base", "scale", "init_rating", "anchor", "anchor_rating"}
    unknown = set(fit_kwargs) - allowed
    if unknown:
        raise TypeError(f"unexpected keyword arguments: {sorted(unknown)}")
    opts: dict[str, Any] = {"base": 10.0, "scale": 400.0, "init_rating": 1000.0, "anchor": None, "anchor_rating": 1000.0}
    opts.update(fit_kwargs)
    _check_anchor(opts["anchor"], n)
    return opts


def bootstrap_bt(
    n: int,
    idx_a: ArrayLike,
    idx_b: ArrayLike,
    wins_a: ArrayLike,
    wins_b: ArrayLike,
    ties: ArrayLike,
    *,
    rounds: int = 1000,
    seed: int | np.random.Generator | None = 0,
    **fit_kwargs: Any,
) -> NDArray[np.float64]:
    """Bootstrap distribution of :func:`fit_bt` ratings, shape ``(rounds, n)``.

    Resampling ``V`` votes with replacement is the same as drawing the vote count of every
    (pair, outcome) cell from ``Multinomial(V, counts / V)``; that is what each round does,
    after which all rounds are fitted together by a batched Newton method, warm-started at
    the full-data estimate. A generator that loses all its votes in a round is NaN in that
    round (with ``anchor``, the whole round is NaN when the anchor loses its votes).
    ``fit_kwargs`` are those of :func:`fit_bt`; counts must be whole numbers.
    """
    opts = _bootstrap_options(n, fit_kwargs)
    rounds = int(rounds)
    if rounds < 0:
        raise ValueError("rounds must be non-negative")
    pi, pj, c_ij, c_ji, c_t = aggregate_pairs(n, idx_a, idx_b, wins_a, wins_b, ties)
    out = np.full((rounds, n), np.nan)
    cells = np.concatenate([c_ij, c_ji, c_t])
    if rounds == 0 or cells.sum() == 0:
        return out
    if not np.allclose(cells, np.round(cells)):
        raise ValueError("bootstrap needs whole vote counts")
    cells = np.round(cells)
    total = int(cells.sum())
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return _fit_draws(
        n, pi, pj, c_ij, c_ji, c_t, rounds, opts,
        lambda r: rng.multinomial(total, cells / total, size=r).astype(np.float64),
    )


def _fit_draws(n, pi, pj, c_ij, c_ji, c_t, rounds: int, opts: dict, draw) -> NDArray[np.float64]:
    """Fit `rounds` resampled data sets; `draw(r)` gives r rows of cell counts (wins i, wins j, ties)."""
    m = pi.size
    out = np.full((rounds, n), np.nan)
    full_ij = (c_ij + 0.5 * c_t)[None]
    full_ji = (c_ji + 0.5 * c_t)[None]
    start, _ = _fit_rounds(n, pi, pj, full_ij, full_ji, np.zeros((1, n)))
    block = max(1, _ROUND_BLOCK_ELEMENTS // max(n * n, 3 * m))
    for lo in range(0, rounds, block):
        r = min(block, rounds - lo)
        draws = draw(r)
        d_ij, d_ji, d_t = draws[:, :m], draws[:, m : 2 * m], draws[:, 2 * m :]
        w_ij = d_ij + 0.5 * d_t
        w_ji = d_ji + 0.5 * d_t
        theta, active = _fit_rounds(n, pi, pj, w_ij, w_ji, np.repeat(start, r, axis=0))
        out[lo : lo + r] = _to_ratings(theta, active, **opts)
    return out


def bootstrap_bt_clusters(
    n: int,
    clusters: ArrayLike,
    idx_a: ArrayLike,
    idx_b: ArrayLike,
    wins_a: ArrayLike,
    wins_b: ArrayLike,
    ties: ArrayLike,
    *,
    rounds: int = 1000,
    seed: int | np.random.Generator | None = 0,
    weights: ArrayLike | None = None,
    **fit_kwargs: Any,
) -> NDArray[np.float64]:
    """Cluster bootstrap of :func:`fit_bt` ratings, shape ``(rounds, n)``.

    Rows carry the cluster they belong to (e.g. the prompt the votes were cast on). Each round
    draws as many clusters as there are, with replacement, and refits on every vote of the
    drawn clusters (a cluster drawn twice counts twice). When votes on one prompt are
    correlated, this gives honest, wider intervals than resampling single votes.

    ``weights`` (rounds × clusters, in the order of ``numpy.unique(clusters)``) gives the draws
    instead, so other statistics can be bootstrapped on the very same resamples.
    """
    opts = _bootstrap_options(n, fit_kwargs)
    if weights is not None:
        weights = np.asarray(weights, dtype=np.float64)
        rounds = weights.shape[0]
    rounds = int(rounds)
    if rounds < 0:
        raise ValueError("rounds must be non-negative")
    a = np.asarray(idx_a, dtype=np.intp).ravel()
    b = np.asarray(idx_b, dtype=np.intp).ravel()
    wa = np.asarray(wins_a, dtype=np.float64).ravel()
    wb = np.asarray(wins_b, dtype=np.float64).ravel()
    t = np.asarray(ties, dtype=np.float64).ravel()
    cl = np.asarray(clusters).ravel()
    if cl.shape != a.shape:
        raise ValueError("clusters must have one entry per row")
    all_labels = np.unique(cl)
    pi, pj, c_ij, c_ji, c_t = aggregate_pairs(n, a, b, wa, wb, t)
    out = np.full((rounds, n), np.nan)
    if rounds == 0 or pi.size == 0:
        return out
    m = pi.size
    pair_of = {int(i) * n + int(j): k for k, (i, j) in enumerate(zip(pi, pj))}
    keep = a != b
    a, b, wa, wb, t, cl = a[keep], b[keep], wa[keep], wb[keep], t[keep], cl[keep]
    swap = a > b
    lo, hi = np.where(swap, b, a), np.where(swap, a, b)
    pair = np.array([pair_of.get(int(x) * n + int(y), -1) for x, y in zip(lo, hi)], dtype=np.intp)
    use = pair >= 0
    cluster = np.searchsorted(all_labels, cl[use])
    pair, swap = pair[use], swap[use]
    win_lo = np.where(swap, wb[use], wa[use])
    win_hi = np.where(swap, wa[use], wb[use])
    k = all_labels.size
    if weights is not None and weights.shape[1] != k:
        raise ValueError(f"weights must have one column per cluster ({k})")
    # Nonzero (cluster, cell) counts; cells are wins of the lower index, of the higher, ties.
    row_cluster = np.tile(cluster, 3)
    row_cell = np.concatenate([pair, pair + m, pair + 2 * m])
    row_count = np.concatenate([win_lo, win_hi, t[use]])
    nz = row_count > 0
    row_cluster, row_cell, row_count = row_cluster[nz], row_cell[nz], row_count[nz]
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    done = [0]

    def draw(r: int) -> NDArray[np.float64]:
        if weights is not None:
            w = weights[done[0] : done[0] + r]
            done[0] += r
        else:
            w = rng.multinomial(k, np.full(k, 1.0 / k), size=r).astype(np.float64)
        out = np.zeros((r, 3 * m))
        np.add.at(out, (slice(None), row_cell), w[:, row_cluster] * row_count)
        return out

    return _fit_draws(n, pi, pj, c_ij, c_ji, c_t, rounds, opts, draw)


def intervals(samples: ArrayLike, level: float = 0.95) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Percentile interval per column: the ``(1-level)/2`` and ``(1+level)/2`` quantiles.

    NaN samples (rounds where a generator had no votes) are ignored.
    """
    if not 0 < level < 1:
        raise ValueError("level must lie in (0, 1)")
    arr = np.asarray(samples, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError("samples must be a (rounds, n) array")
    lo_q, hi_q = (1.0 - level) / 2.0, (1.0 + level) / 2.0
    out = np.full((2, arr.shape[1]), np.nan)
    has = ~np.all(np.isnan(arr), axis=0)
    if has.any():
        out[:, has] = np.nanquantile(arr[:, has], [lo_q, hi_q], axis=0)
    return out[0], out[1]


def rank_by_interval(low: ArrayLike, high: ArrayLike) -> NDArray[np.int64]:
    """Rank ``1 + #{j : low_j > high_i}``: one plus the number clearly ahead of ``i``.

    Ties share a rank; NaN bounds never count as ahead.
    """
    lo = np.asarray(low, dtype=np.float64)
    hi = np.asarray(high, dtype=np.float64)
    if lo.shape != hi.shape or lo.ndim != 1:
        raise ValueError("low and high must be 1-d arrays of the same length")
    return 1 + (lo[None, :] > hi[:, None]).sum(axis=1).astype(np.int64)


def win_probability(ratings: ArrayLike, *, base: float = 10.0, scale: float = 400.0) -> NDArray[np.float64]:
    """Matrix ``P[i, j] = 1 / (1 + base ** ((r_j - r_i) / scale))``, the chance ``i`` beats ``j``."""
    r = np.asarray(ratings, dtype=np.float64)
    return _expit((r[:, None] - r[None, :]) * (math.log(base) / scale))
