import math

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from ratings import bradley_terry as bt
from ratings.bradley_terry import (
    bootstrap_bt,
    fit_bt,
    intervals,
    rank_by_interval,
    win_probability,
)

GAP_3_TO_1 = 400.0 * math.log10(3.0)  # P = 3/4 <=> 10^(gap/400) = 3


def _random_counts(rng, n, pairs, per_pair):
    a, b = np.triu_indices(n, k=1)
    keep = rng.choice(a.size, size=pairs, replace=False)
    a, b = a[keep], b[keep]
    total = rng.integers(1, per_pair, a.size)
    wins_a = rng.binomial(total, 0.6)
    ties = rng.binomial(total - wins_a, 0.3)
    wins_b = total - wins_a - ties
    return a, b, wins_a, wins_b, ties


def _sklearn_ratings(n, a, b, wins_a, wins_b, ties):
    """FastChat-style one-hot logistic regression; ties as half a win each way via weights."""
    rows = a.size
    x = np.zeros((rows, n))
    x[np.arange(rows), a] = math.log(10.0)
    x[np.arange(rows), b] = -math.log(10.0)
    design = np.vstack([x, x])
    labels = np.concatenate([np.ones(rows), np.zeros(rows)])
    weights = np.concatenate([wins_a + 0.5 * ties, wins_b + 0.5 * ties])
    model = LogisticRegression(fit_intercept=False, C=1e10, tol=1e-12, max_iter=100_000)
    model.fit(design, labels, sample_weight=weights)
    ratings = 400.0 * model.coef_[0]
    return ratings - ratings.mean() + 1000.0


def test_three_wins_in_four_games_put_the_winner_400_log10_3_points_ahead():
    ratings = fit_bt(2, [0], [1], [3], [1], [0])
    assert ratings[0] - ratings[1] == pytest.approx(GAP_3_TO_1, abs=1e-6)
    assert ratings.mean() == pytest.approx(1000.0, abs=1e-9)


def test_ties_count_as_half_a_win_each_way():
    with_ties = fit_bt(2, [0], [1], [2], [0], [2])
    assert with_ties[0] - with_ties[1] == pytest.approx(GAP_3_TO_1, abs=1e-6)


def test_row_orientation_and_repetition_do_not_change_the_fit():
    one_row = fit_bt(3, [0, 1], [1, 2], [5, 4], [3, 2], [2, 2])
    split = fit_bt(3, [0, 0, 1, 2], [1, 1, 0, 1], [2, 1, 2, 2], [1, 0, 2, 4], [0, 1, 1, 2])
    np.testing.assert_allclose(split, one_row, rtol=0, atol=1e-8)


def test_it_matches_an_independent_logistic_regression_fit_within_half_an_elo_point():
    rng = np.random.default_rng(7)
    n = 8
    a, b, wins_a, wins_b, ties = _random_counts(rng, n, pairs=20, per_pair=40)
    ours = fit_bt(n, a, b, wins_a, wins_b, ties)
    theirs = _sklearn_ratings(n, a, b, wins_a, wins_b, ties)
    assert np.max(np.abs(ours - theirs)) < 0.5


def test_a_transitive_chain_of_3_to_1_records_gives_equal_steps():
    # 0 beats 1 and 1 beats 2, each 3 to 1, never 0 against 2: the likelihood splits per pair
    ratings = fit_bt(3, [0, 1], [1, 2], [3, 3], [1, 1], [0, 0])
    assert ratings[0] - ratings[1] == pytest.approx(GAP_3_TO_1, abs=1e-6)
    assert ratings[1] - ratings[2] == pytest.approx(GAP_3_TO_1, abs=1e-6)


def test_generators_without_votes_get_nan_and_do_not_shift_the_mean():
    ratings = fit_bt(4, [0], [2], [3], [1], [0])
    assert np.isnan(ratings[1]) and np.isnan(ratings[3])
    assert np.nanmean(ratings) == pytest.approx(1000.0, abs=1e-9)
    assert ratings[0] - ratings[2] == pytest.approx(GAP_3_TO_1, abs=1e-6)


def test_an_anchor_generator_gets_the_anchor_rating():
    ratings = fit_bt(2, [0], [1], [3], [1], [0], anchor=1, anchor_rating=1200.0)
    assert ratings[1] == pytest.approx(1200.0, abs=1e-9)
    assert ratings[0] == pytest.approx(1200.0 + GAP_3_TO_1, abs=1e-6)


def test_an_anchor_without_votes_is_rejected():
    with pytest.raises(ValueError, match="no votes"):
        fit_bt(3, [0], [1], [3], [1], [0], anchor=2)


def test_other_bases_and_scales_rescale_the_gap():
    ratings = fit_bt(2, [0], [1], [3], [1], [0], base=math.e, scale=1.0, init_rating=0.0)
    assert ratings[0] - ratings[1] == pytest.approx(math.log(3.0), abs=1e-9)


def test_perfect_separation_still_gives_finite_ratings_in_the_right_order():
    ratings = fit_bt(3, [0, 1], [1, 2], [5, 5], [0, 0], [0, 0])
    assert np.all(np.isfinite(ratings))
    assert ratings[0] > ratings[1] > ratings[2]
    assert ratings[0] - ratings[1] > 400.0


def test_groups_that_never_met_get_finite_ratings_on_a_common_level():
    ratings = fit_bt(4, [0, 2], [1, 3], [300, 300], [100, 100], [0, 0])
    assert np.all(np.isfinite(ratings))
    assert ratings[0] - ratings[1] == pytest.approx(GAP_3_TO_1, abs=0.5)
    assert ratings[2] - ratings[3] == pytest.approx(GAP_3_TO_1, abs=0.5)
    assert ratings[0] == pytest.approx(ratings[2], abs=1e-6)


def test_no_votes_at_all_gives_all_nan():
    assert np.all(np.isnan(fit_bt(3, [], [], [], [], [])))


def test_bootstrap_returns_one_row_per_round_and_is_reproducible_with_a_seed():
    rng = np.random.default_rng(1)
    a, b, wins_a, wins_b, ties = _random_counts(rng, 6, pairs=15, per_pair=30)
    first = bootstrap_bt(6, a, b, wins_a, wins_b, ties, rounds=50, seed=11)
    again = bootstrap_bt(6, a, b, wins_a, wins_b, ties, rounds=50, seed=11)
    other = bootstrap_bt(6, a, b, wins_a, wins_b, ties, rounds=50, seed=12)
    assert first.shape == (50, 6)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    np.testing.assert_allclose(first.mean(axis=1), 1000.0, atol=1e-9)


def test_the_multinomial_bootstrap_spreads_like_resampling_individual_votes():
    rng = np.random.default_rng(5)
    n, votes = 4, 400
    strengths = np.array([0.0, 0.4, 0.8, 1.2])
    a = rng.integers(0, n, votes)
    b = (a + rng.integers(1, n, votes)) % n
    a_wins = rng.random(votes) < 1.0 / (1.0 + np.exp(strengths[b] - strengths[a]))
    ours = bootstrap_bt(n, a, b, a_wins * 1.0, ~a_wins * 1.0, np.zeros(votes), rounds=600, seed=2)
    naive = []
    for _ in range(600):
        pick = rng.integers(0, votes, votes)
        naive.append(fit_bt(n, a[pick], b[pick], a_wins[pick] * 1.0, ~a_wins[pick] * 1.0, np.zeros(votes)))
    naive = np.array(naive)
    np.testing.assert_allclose(ours.std(axis=0), naive.std(axis=0), rtol=0.15)
    np.testing.assert_allclose(ours.mean(axis=0), naive.mean(axis=0), atol=0.25 * naive.std(axis=0).max())


def test_bootstrap_intervals_cover_the_true_ratings_about_95_percent_of_the_time():
    rng = np.random.default_rng(2024)
    true = np.array([-150.0, -50.0, 0.0, 60.0, 140.0]) + 1000.0
    n, votes, draws = true.size, 1500, 200
    hits = 0
    for draw in range(draws):
        a = rng.integers(0, n, votes)
        b = (a + rng.integers(1, n, votes)) % n
        p_a = 1.0 / (1.0 + 10.0 ** ((true[b] - true[a]) / 400.0))
        a_wins = rng.random(votes) < p_a
        samples = bootstrap_bt(n, a, b, a_wins * 1.0, ~a_wins * 1.0, np.zeros(votes), rounds=300, seed=draw)
        low, high = intervals(samples, 0.95)
        hits += int(np.sum((low <= true) & (true <= high)))
    coverage = hits / (draws * n)
    assert 0.90 <= coverage <= 0.99


def test_bootstrap_of_a_generator_that_loses_all_its_votes_in_a_round_is_nan_there():
    samples = bootstrap_bt(3, [0, 0], [1, 2], [20, 1], [20, 0], [0, 0], rounds=400, seed=0)
    lost = np.isnan(samples[:, 2])
    assert lost.any() and not lost.all()
    assert not np.isnan(samples[:, :2]).any()


def test_percentile_intervals_are_the_2_5_and_97_5_percent_points():
    samples = np.column_stack([np.arange(1001.0), 2.0 * np.arange(1001.0)])
    low, high = intervals(samples, 0.95)
    np.testing.assert_allclose(low, [25.0, 50.0])
    np.testing.assert_allclose(high, [975.0, 1950.0])


def test_rank_counts_the_generators_whose_interval_lies_wholly_above():
    low = np.array([10.0, 5.0, 0.0, -20.0])
    high = np.array([20.0, 15.0, 4.0, -10.0])
    np.testing.assert_array_equal(rank_by_interval(low, high), [1, 1, 3, 4])


def test_win_probability_is_ten_to_one_at_400_points_and_complementary():
    probs = win_probability(np.array([1000.0, 1400.0, 1000.0]))
    assert probs[1, 0] == pytest.approx(10 / 11)
    assert probs[0, 2] == pytest.approx(0.5)
    np.testing.assert_allclose(probs + probs.T, 1.0)


def test_a_cluster_bootstrap_with_one_vote_per_cluster_matches_the_vote_bootstrap():
    rng = np.random.default_rng(3)
    n, votes = 4, 600
    strength = np.array([0.0, 0.3, 0.6, 0.9])
    a = rng.integers(0, n, votes)
    b = (a + rng.integers(1, n, votes)) % n
    p = 1 / (1 + np.exp(strength[b] - strength[a]))
    win = rng.random(votes) < p
    ones = np.ones(votes)
    by_vote = bt.bootstrap_bt(n, a, b, win * ones, (~win) * ones, 0 * ones, rounds=400, seed=1)
    by_cluster = bt.bootstrap_bt_clusters(n, np.arange(votes), a, b, win * ones, (~win) * ones, 0 * ones, rounds=400, seed=1)
    w_vote = np.subtract(*bt.intervals(by_vote)[::-1])
    w_cluster = np.subtract(*bt.intervals(by_cluster)[::-1])
    assert np.all(np.abs(w_cluster / w_vote - 1) < 0.2)


def test_a_cluster_bootstrap_widens_intervals_when_votes_on_a_prompt_move_together():
    rng = np.random.default_rng(4)
    n, prompts, per_prompt = 3, 60, 10
    rows_a, rows_b, wins, prompt = [], [], [], []
    for q in range(prompts):
        i, j = rng.choice(n, 2, replace=False)
        won = rng.random() < 0.6  # one coin per prompt: its ten votes all agree
        for _ in range(per_prompt):
            rows_a.append(i)
            rows_b.append(j)
            wins.append(won)
            prompt.append(q)
    w = np.array(wins, dtype=float)
    by_vote = bt.bootstrap_bt(n, rows_a, rows_b, w, 1 - w, 0 * w, rounds=400, seed=0)
    by_prompt = bt.bootstrap_bt_clusters(n, prompt, rows_a, rows_b, w, 1 - w, 0 * w, rounds=400, seed=0)
    w_vote = np.subtract(*bt.intervals(by_vote)[::-1])
    w_prompt = np.subtract(*bt.intervals(by_prompt)[::-1])
    # Ten copies of one coin carry one coin's information: about sqrt(10) = 3.2 times wider.
    assert np.all(w_prompt / w_vote > 2.0)
