import itertools
import math

import krippendorff
import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss_kappa

from ratings.stats import (
    binary_summary,
    bootstrap_ci,
    cohen_kappa,
    cohen_kappa_table,
    fleiss_kappa,
    kendall_tau_b,
    krippendorff_alpha,
    krippendorff_alpha_ci,
    krippendorff_alpha_from_counts,
    likert_mean_interval,
    likert_summary,
    pairwise_accuracy,
    pearson,
    position_bias,
    position_biases,
    spearman,
    tie_calibration,
    wilson_interval,
    win_rate_matrix,
)

NAN = math.nan

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: 4 observers, 12 units.
KRIPPENDORFF_2011 = np.array(
    [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
        [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
    ]
)


def test_the_wilson_interval_for_8_of_10_is_0_490_to_0_943():
    # p = 0.8, z = 1.96: centre (0.8 + z^2/20) / (1 + z^2/10) = 0.71674,
    # half-width z / (1 + z^2/10) * sqrt(0.016 + z^2/400) = 0.22658
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4)
    assert high == pytest.approx(0.9433, abs=1e-4)


def test_the_wilson_interval_for_0_of_10_starts_at_zero():
    # upper bound z^2 / (n + z^2) = 3.8415 / 13.8415
    low, high = wilson_interval(0, 10)
    assert low == 0.0
    assert high == pytest.approx(0.27753, abs=1e-5)


def test_the_wilson_interval_narrows_at_a_lower_level():
    wide = wilson_interval(8, 10, 0.99)
    narrow = wilson_interval(8, 10, 0.80)
    assert wide[0] < 0.4902 < narrow[0] < 0.8 < narrow[1] < 0.9433 < wide[1]


def test_a_proportion_without_trials_has_no_interval():
    assert all(math.isnan(x) for x in wilson_interval(0, 0))
    assert math.isnan(binary_summary(0, 0)["rate"])


def test_binary_summary_reports_the_pass_rate_with_its_wilson_interval():
    summary = binary_summary(8, 10)
    assert summary["rate"] == pytest.approx(0.8)
    assert summary["low"] == pytest.approx(0.4902, abs=1e-4)
    assert summary["high"] == pytest.approx(0.9433, abs=1e-4)
    assert summary["n"] == 10


def test_likert_summary_uses_a_student_t_interval_on_the_counts():
    # scores 1, 3, 3, 5: mean 3, sd^2 = 8/3, se = 0.8165, t(3, 0.975) = 3.18245, half-width 2.59846
    summary = likert_summary({1: 1, 3: 2, 5: 1})
    assert summary["mean"] == pytest.approx(3.0)
    assert summary["low"] == pytest.approx(0.40154, abs=1e-4)
    assert summary["high"] == pytest.approx(5.59846, abs=1e-4)
    assert summary["n"] == 4


def test_likert_counts_may_come_as_an_array_for_scores_one_to_five():
    summary = likert_summary(np.array([1, 0, 2, 0, 1]))
    assert summary["mean"] == pytest.approx(3.0)
    assert summary["high"] == pytest.approx(5.59846, abs=1e-4)


def test_likert_summary_of_identical_scores_has_no_width_and_of_one_score_no_interval():
    same = likert_summary({4: 7})
    assert same["mean"] == same["low"] == same["high"] == 4.0
    single = likert_summary({2: 1})
    assert single["mean"] == 2.0 and math.isnan(single["low"]) and math.isnan(single["high"])
    assert math.isnan(likert_summary({})["mean"])


def test_position_bias_of_60_left_wins_in_100_is_borderline():
    result = position_bias(60, 100)
    exact = 2 * sum(math.comb(100, k) for k in range(60, 101)) / 2**100
    assert result["share"] == pytest.approx(0.6)
    assert result["p_value"] == pytest.approx(exact, rel=1e-9)
    assert result["p_value"] == pytest.approx(0.0569, abs=1e-4)
    # Wilson 60/100: centre 0.59630, half-width 0.09430
    assert result["low"] == pytest.approx(0.5020, abs=1e-4)
    assert result["high"] == pytest.approx(0.6906, abs=1e-4)
    assert result["n"] == 100


def test_position_bias_p_values_are_scipys_exact_binomial_test_for_many_annotators_at_once():
    from scipy.stats import binomtest

    left = [0, 1, 3, 5, 7, 50, 51, 260, 499, 1000, 1, 0]
    decisive = [1, 2, 7, 10, 9, 100, 100, 500, 1000, 1000, 1, 3]
    results = position_biases(left, decisive)
    for k, n, result in zip(left, decisive, results):
        assert result["p_value"] == pytest.approx(binomtest(k, n, 0.5).pvalue, rel=1e-12)
        assert result["n"] == n and result["share"] == pytest.approx(k / n)
        assert result == position_bias(k, n)


def test_position_bias_without_decisive_votes_shows_no_evidence():
    result = position_bias(0, 0)
    assert math.isnan(result["share"]) and result["p_value"] == 1.0


def test_win_rates_count_ties_as_half_and_merge_both_orientations():
    rate, counts = win_rate_matrix(3, [0, 1], [1, 0], [3, 1], [1, 0], [2, 0])
    # 0 vs 1: 7 votes; 0 won 3 + 0 + 2/2 = 4, 1 won 1 + 1 + 2/2 = 3
    assert counts[0, 1] == counts[1, 0] == 7
    assert rate[0, 1] == pytest.approx(4 / 7)
    assert rate[1, 0] == pytest.approx(3 / 7)
    assert np.isnan(rate[0, 2]) and np.isnan(rate[2, 2]) and counts[2].sum() == 0


def test_krippendorff_alpha_reproduces_krippendorffs_own_four_coder_example():
    assert krippendorff_alpha(KRIPPENDORFF_2011, "nominal") == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha(KRIPPENDORFF_2011, "ordinal") == pytest.approx(0.815, abs=5e-4)
    assert krippendorff_alpha(KRIPPENDORFF_2011, "interval") == pytest.approx(0.849, abs=5e-4)
    assert krippendorff_alpha(KRIPPENDORFF_2011, "ratio") == pytest.approx(0.797, abs=5e-4)


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval"])
def test_krippendorff_alpha_agrees_with_the_krippendorff_package_on_random_data_with_gaps(level):
    rng = np.random.default_rng(42)
    for _ in range(20):
        raters, units = rng.integers(2, 7), rng.integers(5, 60)
        truth = rng.integers(1, 6, units)
        data = np.clip(truth + rng.integers(-1, 2, (raters, units)), 1, 5).astype(float)
        data[rng.random(data.shape) < 0.3] = NAN
        expected = krippendorff.alpha(reliability_data=data, level_of_measurement=level)
        assert krippendorff_alpha(data, level) == pytest.approx(expected, abs=1e-9)


def test_krippendorff_alpha_on_continuous_interval_data_agrees_with_the_package():
    rng = np.random.default_rng(9)
    data = rng.normal(size=(4, 30)) + rng.normal(size=30)
    data[rng.random(data.shape) < 0.2] = NAN
    expected = krippendorff.alpha(reliability_data=data, level_of_measurement="interval")
    assert krippendorff_alpha(data, "interval") == pytest.approx(expected, abs=1e-9)


def test_perfect_agreement_gives_alpha_one_and_no_variation_gives_nan():
    data = np.array([[1, 2, 3, NAN], [1, 2, 3, 4]])
    assert krippendorff_alpha(data, "nominal") == pytest.approx(1.0)
    assert math.isnan(krippendorff_alpha(np.array([[2.0, 2.0], [2.0, 2.0]]), "nominal"))


def test_krippendorff_alpha_rejects_an_unknown_level():
    with pytest.raises(ValueError, match="nominal"):
        krippendorff_alpha(KRIPPENDORFF_2011, "cardinal")


def test_alpha_from_per_unit_counts_equals_alpha_from_the_raters_by_units_array():
    import numpy as np

    from ratings.stats import krippendorff_alpha, krippendorff_alpha_from_counts

    rng = np.random.default_rng(7)
    data = rng.integers(1, 6, size=(9, 40)).astype(float)
    data[rng.random(data.shape) < 0.4] = np.nan
    values = np.unique(data[~np.isnan(data)])
    counts = np.stack([[np.sum(data[:, u] == v) for v in values] for u in range(data.shape[1])])
    for level in ("nominal", "ordinal", "interval"):
        assert krippendorff_alpha_from_counts(counts, values, level) == pytest.approx(krippendorff_alpha(data, level), abs=1e-12)


def test_votes_to_settle_scales_the_worst_adjacent_pair_by_its_standard_error():
    from ratings.stats import votes_to_settle

    # gaps 100 (se 20, 20 -> s = 28.28) and 30 (se 20, 10 -> s = 22.36); the second is the worst:
    # (1.96 * sqrt(500) / 30)^2 = 2.1342, so 1,000 votes must grow to 2,134.2: 1,135 more (rounded up).
    assert votes_to_settle([1100, 1000, 970], [20, 20, 10], 1000) == 1135
    # every neighbour far apart: nothing more needed
    assert votes_to_settle([1300, 1000, 700], [10, 10, 10], 500) == 0
    # a gap under the floor counts as 10 points: (1.96 * sqrt(50) / 10)^2 = 1.9208 -> 921 more of 1,000
    assert votes_to_settle([1000, 1000.5], [5, 5], 1000) == 921
    assert votes_to_settle([1000], [5], 10) is None


# Fleiss' kappa ---------------------------------------------------------------------------------

# Wikipedia, "Fleiss' kappa", worked example: 10 subjects, 14 raters, 5 categories, kappa 0.210.
WIKIPEDIA_FLEISS = np.array(
    [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
)

# Fleiss (1971), Table 1 as raw diagnoses (the `diagnoses` data of R's irr package): 30 patients,
# 6 psychiatrists each, categories 1 depression, 2 personality disorder, 3 schizophrenia,
# 4 neurosis, 5 other. Fleiss reports kappa = 0.430.
FLEISS_1971_DIAGNOSES = np.array(
    [
        [4, 4, 4, 4, 4, 4], [2, 2, 2, 5, 5, 5], [2, 3, 3, 3, 3, 5], [5, 5, 5, 5, 5, 5],
        [2, 2, 2, 4, 4, 4], [1, 1, 3, 3, 3, 3], [3, 3, 3, 3, 5, 5], [1, 1, 3, 3, 3, 4],
        [1, 1, 4, 4, 4, 4], [5, 5, 5, 5, 5, 5], [1, 4, 4, 4, 4, 4], [1, 2, 4, 4, 4, 4],
        [2, 2, 2, 3, 3, 3], [1, 4, 4, 4, 4, 4], [2, 2, 4, 4, 4, 5], [3, 3, 3, 3, 3, 5],
        [1, 1, 1, 4, 5, 5], [1, 1, 1, 1, 1, 2], [2, 2, 4, 4, 4, 4], [1, 3, 3, 5, 5, 5],
        [5, 5, 5, 5, 5, 5], [2, 4, 4, 4, 4, 4], [2, 2, 4, 5, 5, 5], [1, 1, 4, 4, 4, 4],
        [1, 4, 4, 4, 4, 5], [2, 2, 2, 2, 2, 4], [1, 1, 1, 1, 5, 5], [2, 2, 4, 4, 4, 4],
        [1, 3, 3, 3, 3, 3], [5, 5, 5, 5, 5, 5],
    ]
)


def fleiss_kappa_from_labels(labels, categories):
    """Fleiss' kappa by counting agreeing rater pairs item by item (Fleiss 1971, eq. 1-6)."""
    items, raters = len(labels), len(labels[0])
    pair_count = raters * (raters - 1) / 2
    observed = sum(sum(a == b for a, b in itertools.combinations(row, 2)) / pair_count for row in labels) / items
    shares = [sum(row.count(c) for row in labels) / (items * raters) for c in categories]
    chance = sum(p * p for p in shares)
    return (observed - chance) / (1 - chance)


def labels_to_table(labels, categories):
    return np.array([[list(row).count(c) for c in categories] for row in labels])


def test_fleiss_kappa_reproduces_the_wikipedia_example_of_0_210():
    # p_j = 0.143, 0.200, 0.279, 0.150, 0.229; P = 0.378, P_e = 0.213
    assert fleiss_kappa(WIKIPEDIA_FLEISS) == pytest.approx(0.210, abs=5e-4)
    assert fleiss_kappa(WIKIPEDIA_FLEISS) == pytest.approx(statsmodels_fleiss_kappa(WIKIPEDIA_FLEISS), abs=1e-12)


def test_fleiss_kappa_reproduces_fleiss_1971_diagnoses_of_0_430():
    labels = FLEISS_1971_DIAGNOSES.tolist()
    table = labels_to_table(labels, range(1, 6))
    assert fleiss_kappa(table) == pytest.approx(0.430, abs=5e-4)
    assert fleiss_kappa(table) == pytest.approx(fleiss_kappa_from_labels(labels, range(1, 6)), abs=1e-12)
    assert fleiss_kappa(table) == pytest.approx(statsmodels_fleiss_kappa(table), abs=1e-12)


def test_fleiss_kappa_agrees_with_pair_counting_and_statsmodels_on_random_panels():
    rng = np.random.default_rng(11)
    worst = 0.0
    for _ in range(40):
        items, raters, categories = rng.integers(2, 40), rng.integers(2, 9), rng.integers(2, 6)
        truth = rng.integers(0, categories, items)
        noisy = rng.random((items, raters)) < rng.uniform(0.1, 0.9)
        labels = np.where(noisy, rng.integers(0, categories, (items, raters)), truth[:, None]).tolist()
        table = labels_to_table(labels, range(categories))
        if (table.sum(axis=0) == items * raters).any():
            continue  # one category took every rating: kappa undefined
        ours = fleiss_kappa(table)
        worst = max(worst, abs(ours - fleiss_kappa_from_labels(labels, range(categories))))
        worst = max(worst, abs(ours - statsmodels_fleiss_kappa(table)))
    assert worst < 1e-9


def test_fleiss_kappa_refuses_items_with_different_numbers_of_raters():
    with pytest.raises(ValueError, match="same number of raters.*row 0 has 3.*row 2 has 2"):
        fleiss_kappa([[1, 2], [3, 0], [1, 1]])
    with pytest.raises(ValueError, match="at least 2 raters"):
        fleiss_kappa([[1, 0], [0, 1]])
    with pytest.raises(ValueError, match="non-negative .row 1"):
        fleiss_kappa([[1, 1], [3, -1]])


def test_fleiss_kappa_is_one_for_unanimous_items_and_undefined_with_one_category_used():
    assert fleiss_kappa([[3, 0], [0, 3], [3, 0]]) == pytest.approx(1.0)
    assert math.isnan(fleiss_kappa([[4, 0], [4, 0]]))
    assert math.isnan(fleiss_kappa(np.zeros((0, 3))))


# Correlations -----------------------------------------------------------------------------------


def kendall_tau_b_by_pairs(x, y):
    """Kendall (1945) tau-b by enumerating every pair."""
    concordant = discordant = tied_x = tied_y = 0
    for i, j in itertools.combinations(range(len(x)), 2):
        dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
        tied_x += dx == 0
        tied_y += dy == 0
        concordant += dx * dy > 0
        discordant += dx * dy < 0
    total = len(x) * (len(x) - 1) / 2
    return (concordant - discordant) / math.sqrt((total - tied_x) * (total - tied_y))


def test_pearson_spearman_and_kendall_agree_with_scipy_and_pair_counting_on_data_with_ties():
    rng = np.random.default_rng(5)
    worst = {"pearson": 0.0, "spearman": 0.0, "kendall": 0.0}
    for _ in range(50):
        n = rng.integers(3, 60)
        x = np.round(rng.normal(size=n), rng.integers(0, 3))
        y = np.round(0.5 * x + rng.normal(size=n), rng.integers(0, 3))
        if np.all(x == x[0]) or np.all(y == y[0]):
            continue
        worst["pearson"] = max(worst["pearson"], abs(pearson(x, y) - sps.pearsonr(x, y).statistic), abs(pearson(x, y) - np.corrcoef(x, y)[0, 1]))
        worst["spearman"] = max(worst["spearman"], abs(spearman(x, y) - sps.spearmanr(x, y).statistic))
        worst["kendall"] = max(worst["kendall"], abs(kendall_tau_b(x, y) - kendall_tau_b_by_pairs(x, y)), abs(kendall_tau_b(x, y) - sps.kendalltau(x, y).statistic))
    assert max(worst.values()) < 1e-9


def test_correlations_drop_missing_pairs_and_are_undefined_below_three_points_or_without_variation():
    x, y = [1.0, 2.0, math.nan, 4.0, 5.0], [2.0, 1.0, 7.0, 4.0, math.nan]
    assert pearson(x, y) == pytest.approx(sps.pearsonr([1, 2, 4], [2, 1, 4]).statistic, abs=1e-12)
    for correlation in (pearson, spearman, kendall_tau_b):
        assert math.isnan(correlation([1, 2], [2, 1]))
        assert math.isnan(correlation([1, 2, 3], [4, 4, 4]))
        assert math.isnan(correlation([7, 7, 7, 7], [1, 2, 3, 4]))
        assert correlation([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
        with pytest.raises(ValueError, match="same length"):
            correlation([1, 2, 3], [1, 2])
        with pytest.raises(ValueError, match="infinite"):
            correlation([1, 2, math.inf], [1, 2, 3])


# Pairwise accuracy ------------------------------------------------------------------------------


def tie_calibration_by_brute_force(human, diff):
    """Every candidate threshold (0 and each distinct |diff|) tried in full; first best kept."""
    human, diff = np.asarray(human), np.asarray(diff, dtype=float)
    best = (-1.0, math.nan)
    for eps in sorted({0.0, *np.abs(diff).tolist()}):
        label = np.where(np.abs(diff) <= eps, 0, np.sign(diff))
        accuracy = float(np.mean(label == human))
        if accuracy > best[0]:
            best = (accuracy, eps)
    return best


def pairs_from_item_scores(human_scores, metric_scores):
    i, j = np.triu_indices(len(human_scores), 1)
    human_scores, metric_scores = np.asarray(human_scores, float), np.asarray(metric_scores, float)
    return np.sign(human_scores[i] - human_scores[j]), metric_scores[i] - metric_scores[j]


def test_tie_calibration_on_a_hand_worked_example():
    """Five pairs: human +1, +1, -1, 0, 0 and metric differences 0.9, 0.1, -0.5, 0.05, 0.3.

    eps = 0:    metric labels +, +, -, +, +  -> 3 of 5 right
    eps = 0.05: metric labels +, +, -, 0, +  -> 4 of 5 (the 0.05 pair becomes a correct tie)
    eps = 0.1:  metric labels +, 0, -, 0, +  -> 3 of 5
    eps = 0.3:  metric labels +, 0, -, 0, 0  -> 4 of 5
    eps = 0.5:  3 of 5;  eps = 0.9: every pair a metric tie, 2 of 5.
    The first best threshold is 0.05: accuracy 0.8. Dropping ties instead keeps the three
    decisive human pairs, all ordered right: 1.0.
    """
    human, diff = [1, 1, -1, 0, 0], [0.9, 0.1, -0.5, 0.05, 0.3]
    assert tie_calibration(human, diff) == (0.8, 0.05)
    assert pairwise_accuracy(human, diff) == 0.8
    assert pairwise_accuracy(human, diff, ties="exclude") == 1.0


def test_tie_calibration_reproduces_the_mt_metrics_eval_reference_examples():
    # google-research/mt-metrics-eval, tau_optimization_test.py, scored with acc_23:
    # metric 0, 2, 6, 8 against human 1, 1, 1, 4 -> best threshold 4, accuracy 4/6;
    # against human 1, 2, 3, 4 -> best threshold 0, accuracy 1.
    assert tie_calibration(*pairs_from_item_scores([1, 1, 1, 4], [0, 2, 6, 8])) == pytest.approx((4 / 6, 4.0), abs=1e-12)
    assert tie_calibration(*pairs_from_item_scores([1, 2, 3, 4], [0, 2, 6, 8])) == pytest.approx((1.0, 0.0), abs=1e-12)


def test_tie_calibration_agrees_with_a_brute_force_search_over_every_threshold():
    rng = np.random.default_rng(3)
    worst_accuracy = worst_epsilon = 0.0
    for _ in range(200):
        n = rng.integers(1, 80)
        human = rng.choice([-1, 0, 1], size=n, p=rng.dirichlet([1, 1, 1]))
        diff = np.round(rng.normal(size=n) + 0.7 * human, rng.integers(0, 3))  # exact ties and repeats
        accuracy, epsilon = tie_calibration(human, diff)
        expected_accuracy, expected_epsilon = tie_calibration_by_brute_force(human, diff)
        worst_accuracy = max(worst_accuracy, abs(accuracy - expected_accuracy))
        worst_epsilon = max(worst_epsilon, abs(epsilon - expected_epsilon))
    assert worst_accuracy < 1e-12 and worst_epsilon < 1e-12


def test_excluding_ties_is_concordant_over_concordant_plus_discordant():
    rng = np.random.default_rng(8)
    human = rng.choice([-1, 0, 1], size=300)
    diff = np.round(rng.normal(size=300) + 0.5 * human)
    concordant = sum(1 for h, d in zip(human, diff) if h != 0 and d != 0 and (h > 0) == (d > 0))
    discordant = sum(1 for h, d in zip(human, diff) if h != 0 and d != 0 and (h > 0) != (d > 0))
    assert pairwise_accuracy(human, diff, ties="exclude") == pytest.approx(concordant / (concordant + discordant), abs=1e-12)
    assert math.isnan(pairwise_accuracy([0, 1], [0.5, 0.0], ties="exclude"))


def test_tie_calibration_rewards_a_metric_that_ties_the_human_ties():
    human = [1, 1, 0, 0, -1]
    assert tie_calibration(human, [0.8, 0.6, 0.01, -0.02, -0.7]) == (1.0, 0.02)
    # a coarse metric that ties a decisive pair: dropping ties hides the miss, calibration counts it
    # (best threshold 0.4 ties both human ties; the decisive pair tied at 0.0 stays wrong: 4 of 5)
    assert tie_calibration(human, [0.8, 0.0, 0.4, -0.4, -0.7]) == (0.8, 0.4)
    assert pairwise_accuracy(human, [0.8, 0.0, 0.4, -0.4, -0.7], ties="exclude") == 1.0


def test_pairwise_accuracy_explains_bad_input_and_is_undefined_without_pairs():
    with pytest.raises(ValueError, match="position 2 holds 2.0"):
        pairwise_accuracy([1, -1, 2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="position 1 holds nan"):
        pairwise_accuracy([1, -1], [0.1, math.nan])
    with pytest.raises(ValueError, match="same length"):
        pairwise_accuracy([1, -1], [0.1])
    with pytest.raises(ValueError, match="calibrated"):
        pairwise_accuracy([1], [0.1], ties="half")
    assert all(math.isnan(v) for v in tie_calibration([], []))
    assert math.isnan(pairwise_accuracy([], []))


def test_tie_calibration_runs_on_two_hundred_thousand_pairs():
    rng = np.random.default_rng(1)
    human = rng.choice([-1, 0, 1], size=200_000)
    diff = rng.normal(size=200_000) + human
    accuracy, epsilon = tie_calibration(human, diff)
    assert 0.0 < epsilon and np.mean(np.where(np.abs(diff) <= epsilon, 0, np.sign(diff)) == human) == accuracy


# Bootstrap intervals ----------------------------------------------------------------------------


def test_a_bootstrap_interval_of_pearson_r_covers_the_true_correlation_about_95_percent_of_the_time():
    rng = np.random.default_rng(2024)
    rho, covered = 0.6, 0
    for dataset in range(200):
        x, y = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=80).T
        low, high = bootstrap_ci(pearson, x, y, rounds=400, seed=dataset)
        covered += low <= rho <= high
    # 200 datasets at 95 %: sd 1.5 points; the percentile interval runs slightly short at n = 80
    assert 0.89 <= covered / 200 <= 0.99


def test_a_cluster_bootstrap_keeps_its_coverage_where_resampling_rows_does_not():
    rng = np.random.default_rng(77)
    by_cluster = by_row = 0
    for dataset in range(200):
        prompt = np.repeat(np.arange(30), 10)
        values = rng.normal(size=30)[prompt] + rng.normal(size=300)  # true mean 0, prompts correlated
        low, high = bootstrap_ci(np.mean, values, clusters=prompt, rounds=300, seed=dataset)
        by_cluster += low <= 0.0 <= high
        low, high = bootstrap_ci(np.mean, values, rounds=300, seed=dataset)
        by_row += low <= 0.0 <= high
    assert 0.88 <= by_cluster / 200 <= 0.99
    assert by_row / 200 < 0.75  # design effect 5.5: rows alone claim too much precision


def test_the_bootstrap_is_deterministic_for_a_seed_and_honest_about_too_little_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=50)
    groups = rng.integers(0, 8, 50)
    assert bootstrap_ci(np.mean, x, seed=4) == bootstrap_ci(np.mean, x, seed=4)
    assert bootstrap_ci(np.mean, x, seed=4) != bootstrap_ci(np.mean, x, seed=5)
    assert bootstrap_ci(np.mean, x, clusters=groups, seed=4) == bootstrap_ci(np.mean, x, clusters=groups, seed=4)
    assert all(math.isnan(v) for v in bootstrap_ci(np.mean, [1.0]))
    assert all(math.isnan(v) for v in bootstrap_ci(np.mean, [1.0, 2.0, 3.0], clusters=["p", "p", "p"]))
    # a statistic undefined on most resamples (here whenever a 1 is drawn: 67 %) gives no interval
    undefined_with_a_one = lambda v: math.nan if v.min() == 1 else float(v.mean())  # noqa: E731
    assert all(math.isnan(v) for v in bootstrap_ci(undefined_with_a_one, [1.0, 2.0, 3.0, 4.0, 5.0]))
    with pytest.raises(ValueError, match="same length"):
        bootstrap_ci(pearson, [1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="one label per row"):
        bootstrap_ci(np.mean, [1, 2, 3], clusters=[1, 2])


def test_a_cluster_draw_keeps_every_row_of_each_drawn_cluster():
    # cluster sizes 1, 2 and 3 with values 1, 10 and 100: any resample's sum is a sum of whole clusters
    values = np.array([1.0, 10.0, 10.0, 100.0, 100.0, 100.0])
    sums = []
    bootstrap_ci(lambda v: sums.append(v.sum()) or 0.0, values, clusters=[0, 1, 1, 2, 2, 2], rounds=200)
    whole = {a + b + c for a in (1, 20, 300) for b in (1, 20, 300) for c in (1, 20, 300)}
    assert set(sums) <= whole and len(set(sums)) > 5


def likert_panel(rng, units, raters=3):
    truth = rng.integers(1, 6, units)
    noise = rng.choice([-1, 0, 1], size=(units, raters), p=[0.2, 0.6, 0.2])
    ratings = np.clip(truth[:, None] + noise, 1, 5)
    return np.stack([(ratings == v).sum(axis=1) for v in range(1, 6)], axis=1)


def test_the_alpha_interval_covers_the_population_alpha_about_95_percent_of_the_time():
    rng = np.random.default_rng(31)
    values = np.arange(1, 6)
    population = krippendorff_alpha_from_counts(likert_panel(rng, 200_000), values, "interval")
    covered = 0
    for dataset in range(100):
        low, high = krippendorff_alpha_ci(likert_panel(rng, 80), values, "interval", rounds=300, seed=dataset)
        covered += low <= population <= high
    assert 0.86 <= covered / 100 <= 1.0


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval"])
def test_the_alpha_interval_is_the_bootstrap_of_alpha_over_resampled_units_or_prompts(level):
    # The same percentile bootstrap as recomputing alpha from scratch on every resample of units
    # (or of whole prompts), drawn with the same seed: however it is computed, it is that interval.
    rng = np.random.default_rng(8)
    counts = np.concatenate([likert_panel(rng, 90), [[1, 0, 0, 0, 0]] * 5])  # 5 units with one rating
    values = np.arange(1, 6)
    prompts = rng.integers(0, 12, len(counts))
    pairable = counts.sum(axis=1) >= 2
    for clusters in (None, prompts):
        expected = bootstrap_ci(
            lambda c: krippendorff_alpha_from_counts(c, values, level), counts[pairable],
            clusters=None if clusters is None else clusters[pairable], rounds=150, seed=3,
        )
        got = krippendorff_alpha_ci(counts, values, level, clusters=clusters, rounds=150, seed=3)
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_the_alpha_interval_brackets_the_estimate_is_reproducible_and_needs_two_units():
    rng = np.random.default_rng(6)
    counts = likert_panel(rng, 60)
    values = np.arange(1, 6)
    alpha = krippendorff_alpha_from_counts(counts, values, "ordinal")
    low, high = krippendorff_alpha_ci(counts, values, "ordinal", seed=1)
    assert low < alpha < high
    assert krippendorff_alpha_ci(counts, values, "ordinal", seed=1) == (low, high)
    prompts = np.arange(60) // 6
    assert krippendorff_alpha_ci(counts, values, "ordinal", clusters=prompts, seed=1) != (low, high)
    # one pairable unit (the others have a single rating) cannot be resampled
    assert all(math.isnan(v) for v in krippendorff_alpha_ci([[2, 1, 0, 0, 0], [1, 0, 0, 0, 0]], values, "nominal"))
    with pytest.raises(ValueError, match="nominal"):
        krippendorff_alpha_ci(counts, values, "cardinal")


# Likert mean interval ---------------------------------------------------------------------------


def test_the_likert_mean_interval_never_leaves_the_scale_on_extreme_counts():
    extremes = [{5: 3}, {5: 1000}, {1: 1, 5: 2}, {1: 1, 5: 999}, {1: 2}, {1: 500, 5: 500}, {1: 1, 2: 1}]
    for counts in extremes:
        mean, low, high, n = likert_mean_interval(counts)
        assert 1.0 <= low <= mean <= high <= 5.0, counts
        assert n == sum(counts.values())
    # the t-interval it replaces runs off the scale on the same data
    assert likert_summary({1: 1, 5: 2})["low"] < 1.0
    assert likert_mean_interval({5: 3})[1:3] == (5.0, 5.0)


def test_the_likert_mean_interval_shows_a_single_rating_without_bounds_and_no_rating_as_nan():
    mean, low, high, n = likert_mean_interval({4: 1})
    assert (mean, n) == (4.0, 1) and math.isnan(low) and math.isnan(high)
    mean, low, high, n = likert_mean_interval([0, 0, 0, 0, 0])
    assert n == 0 and all(math.isnan(v) for v in (mean, low, high))
    with pytest.raises(ValueError, match="whole non-negative"):
        likert_mean_interval([1.5, 2, 0, 0, 0])


def test_the_likert_mean_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(12)
    shares = np.array([0.1, 0.1, 0.2, 0.3, 0.3])
    truth = float(shares @ np.arange(1, 6))
    covered = 0
    for dataset in range(200):
        counts = rng.multinomial(40, shares)
        _, low, high, _ = likert_mean_interval(counts, rounds=1000, seed=dataset)
        covered += low <= truth <= high
    assert 0.89 <= covered / 200 <= 0.99


def test_the_likert_mean_interval_agrees_with_the_t_interval_for_large_n():
    counts = [500, 700, 1500, 2000, 1300]
    mean, low, high, n = likert_mean_interval(counts, rounds=20_000)
    t = likert_summary(counts)
    half = t["high"] - t["mean"]  # 0.030
    assert n == 6000 and mean == pytest.approx(t["mean"], abs=1e-12)
    assert low == pytest.approx(t["low"], abs=0.05 * half)
    assert high == pytest.approx(t["high"], abs=0.05 * half)
    assert likert_mean_interval(counts, seed=3) == likert_mean_interval(counts, seed=3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cohen_kappa_agrees_with_scikit_learn_on_random_labels(seed):
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(seed)
    a = rng.integers(1, 6, 80)
    b = np.where(rng.random(80) < 0.6, a, rng.integers(1, 6, 80))
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)
    labels = np.array(["left", "right", "tie"])
    x, y = labels[rng.integers(0, 3, 50)], labels[rng.integers(0, 3, 50)]
    assert cohen_kappa(x, y) == pytest.approx(cohen_kappa_score(x, y), abs=1e-12)


def test_cohen_kappa_of_cohens_textbook_table():
    # Two raters, 50 items: 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no. p_o = 0.7,
    # p_e = 0.5 * 0.6 + 0.5 * 0.4 = 0.5, kappa = 0.4.
    assert cohen_kappa_table([[20, 5], [10, 15]]) == pytest.approx(0.4)


def test_cohen_kappa_is_undefined_without_items_or_variation():
    assert np.isnan(cohen_kappa([], []))
    assert np.isnan(cohen_kappa([1, 1, 1], [1, 1, 1]))
