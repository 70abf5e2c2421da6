"""Pair samplers: which two generators an annotator compares next."""

import time

import numpy as np
import pytest
from scipy import stats

from ratings.sampling import (
    SAMPLERS,
    NoPairAvailable,
    SamplerState,
    bt_standard_errors,
    pick_pair,
)
from ratings.bradley_terry import fit_bt


def _state(ratings, votes_per_pair=200, *, fitted=True):
    """A running arena: every pair has the same number of votes and the fit matches the truth."""
    ratings = np.asarray(ratings, dtype=float)
    n = ratings.size
    counts = np.full((n, n), float(votes_per_pair))
    np.fill_diagonal(counts, 0.0)
    if not fitted:
        return SamplerState(n=n, counts=counts)
    return SamplerState(n=n, counts=counts, ratings=ratings, stderr=bt_standard_errors(n, counts, ratings))


def _tally(kind, state, picks, seed=0, **kwargs):
    rng = np.random.default_rng(seed)
    tally = np.zeros((state.n, state.n), dtype=int)
    for _ in range(picks):
        i, j = pick_pair(kind, state, rng, **kwargs)
        tally[i, j] += 1
    return tally


@pytest.mark.parametrize("kind", SAMPLERS)
def test_it_returns_two_distinct_generators_in_order(kind):
    state = _state(np.linspace(900, 1100, 7))
    rng = np.random.default_rng(1)
    for _ in range(200):
        i, j = pick_pair(kind, state, rng)
        assert isinstance(i, int) and isinstance(j, int)
        assert 0 <= i < j < 7


def test_uniform_covers_every_pair_about_equally():
    n = 6
    state = _state(np.linspace(800, 1200, n))
    tally = _tally("uniform", state, 15_000)
    observed = tally[np.triu_indices(n, 1)]
    assert observed.min() > 0
    assert stats.chisquare(observed).pvalue > 1e-3


def test_uniform_ignores_the_ratings():
    n = 5
    far_apart = _tally("uniform", _state([0, 1000, 2000, 3000, 4000]), 10_000, seed=3)
    close = _tally("uniform", _state([1000, 1001, 1002, 1003, 1004]), 10_000, seed=4)
    iu = np.triu_indices(n, 1)
    table = np.vstack([far_apart[iu], close[iu]])
    assert stats.chi2_contingency(table).pvalue > 1e-3


@pytest.mark.parametrize("kind", SAMPLERS)
def test_it_only_picks_eligible_pairs(kind):
    n = 8
    eligible = np.zeros((n, n), dtype=bool)
    eligible[0, 5] = eligible[3, 1] = eligible[6, 7] = True
    state = _state(np.linspace(900, 1100, n))
    tally = _tally(kind, state, 600, eligible=eligible)
    picked = {(i, j) for i, j in zip(*np.nonzero(tally))}
    assert picked == {(0, 5), (1, 3), (6, 7)}


def test_active_keeps_to_eligible_pairs_even_when_a_new_generator_waits():
    n = 6
    ratings = np.linspace(900, 1100, n)
    ratings[5] = np.nan
    state = _state(ratings)
    state.counts[5, :] = state.counts[:, 5] = 0
    eligible = np.ones((n, n), dtype=bool)
    eligible[5, :] = eligible[:, 5] = False
    tally = _tally("active", state, 500, eligible=eligible)
    assert tally[:, 5].sum() == 0 and tally[5, :].sum() == 0
    assert tally.sum() == 500


@pytest.mark.parametrize("kind", SAMPLERS)
def test_it_raises_when_no_pair_is_eligible(kind):
    n = 4
    state = _state(np.linspace(900, 1100, n))
    only_self = np.eye(n, dtype=bool)
    with pytest.raises(NoPairAvailable):
        pick_pair(kind, state, np.random.default_rng(0), eligible=only_self)
    with pytest.raises(NoPairAvailable):
        pick_pair(kind, state, np.random.default_rng(0), eligible=np.zeros((n, n), dtype=bool))


def test_it_raises_when_there_is_only_one_generator():
    state = SamplerState(n=1, counts=np.zeros((1, 1)))
    with pytest.raises(NoPairAvailable):
        pick_pair("uniform", state, np.random.default_rng(0))


def test_it_rejects_an_unknown_sampler():
    with pytest.raises(ValueError):
        pick_pair("greedy", _state([1000, 1100]), np.random.default_rng(0))


def test_active_puts_a_new_generator_with_no_votes_first():
    n = 8
    ratings = np.linspace(850, 1150, n)
    ratings[7] = np.nan
    state = _state(ratings)
    state.counts[7, :] = state.counts[:, 7] = 0
    tally = _tally("active", state, 1000)
    with_new = tally[:, 7].sum()
    assert with_new > 0.8 * 1000
    # Its opponents are spread over the field, so one fit can place it.
    assert np.count_nonzero(tally[:7, 7]) == 7


def test_active_counts_votes_cast_since_the_last_fit():
    # Two equally open pairs; the fit is not refreshed, but one of them has since had many votes.
    state = _state([1000, 1004, 1500, 1504, 2000], votes_per_pair=50)
    before = _tally("active", state, 2000)
    state.counts[0, 1] = state.counts[1, 0] = 2000
    after = _tally("active", state, 2000)
    assert after[0, 1] < before[0, 1] / 2
    assert after[2, 3] > before[2, 3]


def test_active_concentrates_on_close_pairs_but_still_visits_every_pair():
    # 0 and 1 are nearly tied, 2 and 3 too; everything else is hundreds of points apart.
    n = 6
    state = _state([1000, 1004, 1400, 1406, 600, 1800], votes_per_pair=100)
    picks = 6000
    tally = _tally("active", state, picks)
    uniform_share = 1 / (n * (n - 1) / 2)
    for pair in [(0, 1), (2, 3)]:
        assert tally[pair] / picks > 4 * uniform_share
    assert tally[4, 5] / picks < uniform_share
    assert np.all(tally[np.triu_indices(n, 1)] > 0)


def test_active_shares_votes_between_equally_open_pairs():
    # Drawn in proportion to a score, not the single best pair: two equally close pairs
    # both get a large share, so one pair is not hammered between two refreshes.
    state = _state([1000, 1003, 1500, 1503, 2000, 2003], votes_per_pair=100)
    tally = _tally("active", state, 3000)
    shares = np.array([tally[0, 1], tally[2, 3], tally[4, 5]]) / 3000
    assert np.all(shares > 0.15)


def test_active_still_picks_when_every_order_is_settled():
    state = _state([0, 4000, 8000, 12000], votes_per_pair=100_000)
    tally = _tally("active", state, 600)
    assert tally.sum() == 600
    assert np.all(tally[np.triu_indices(4, 1)] > 0)


def test_active_before_any_fit_picks_every_pair():
    n = 5
    state = _state(np.zeros(n), fitted=False)
    tally = _tally("active", state, 3000)
    observed = tally[np.triu_indices(n, 1)]
    assert stats.chisquare(observed).pvalue > 1e-3


def test_standard_errors_match_the_spread_of_refitted_ratings():
    rng = np.random.default_rng(7)
    n = 6
    true = np.array([850.0, 920, 1000, 1030, 1080, 1120])
    i, j = np.triu_indices(n, 1)
    votes = rng.integers(80, 160, size=i.size)
    p = 1 / (1 + 10 ** ((true[j] - true[i]) / 400))
    fits = []
    for _ in range(400):
        wins = rng.binomial(votes, p)
        fits.append(fit_bt(n, i, j, wins, votes - wins, np.zeros(i.size)))
    counts = np.zeros((n, n))
    counts[i, j] = votes
    counts += counts.T
    predicted = bt_standard_errors(n, counts, true)
    observed = np.std(fits, axis=0)
    assert np.allclose(predicted, observed, rtol=0.15)


def test_standard_errors_halve_with_four_times_the_votes():
    ratings = np.array([900.0, 1000, 1100, 1050])
    counts = np.full((4, 4), 50.0)
    np.fill_diagonal(counts, 0)
    assert np.allclose(bt_standard_errors(4, 4 * counts, ratings), bt_standard_errors(4, counts, ratings) / 2)


def test_standard_errors_are_infinite_without_a_rating_or_a_link():
    ratings = np.array([1000.0, 1100, np.nan, 950])
    counts = np.zeros((4, 4))
    counts[0, 1] = counts[1, 0] = 30
    counts[0, 3] = counts[3, 0] = 30
    se = bt_standard_errors(4, counts, ratings)
    assert np.isinf(se[2]) and np.all(np.isfinite(se[[0, 1, 3]]))

    apart = np.zeros((4, 4))
    apart[0, 1] = apart[1, 0] = 30
    apart[2, 3] = apart[3, 2] = 30
    assert np.all(np.isinf(bt_standard_errors(4, apart, np.array([1000.0, 1050, 980, 990]))))


@pytest.mark.parametrize("kind", SAMPLERS)
def test_a_pick_among_fifty_generators_is_fast(kind):
    n = 50
    rng = np.random.default_rng(5)
    state = _state(rng.normal(1000, 100, n), votes_per_pair=40)
    eligible = rng.random((n, n)) < 0.8
    times = []
    for _ in range(500):
        start = time.perf_counter()
        pick_pair(kind, state, rng, eligible=eligible)
        times.append(time.perf_counter() - start)
    assert np.percentile(times, 99) < 0.020
