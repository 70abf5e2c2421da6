"""Inception Score, KID, improved precision/recall and density/coverage against the
reference implementations (torch-fidelity 0.4.0 and the authors' prdc code) on the same
inputs."""

import numpy as np
import pytest
import torch
from prdc import compute_prdc
from torch_fidelity.metric_isc import isc_features_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric
from torch_fidelity.metric_prc import prc_features_to_metric

from judging import metrics as M

KID_KWARGS = dict(kid_kernel="poly", kid_kernel_poly_degree=3, kid_kernel_poly_gamma=None, kid_kernel_poly_coef0=1, verbose=False)


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-300)


@pytest.mark.parametrize("n", [100, 503])
def test_inception_score_matches_torch_fidelity_on_the_same_logits(n):
    logits = np.random.default_rng(n).normal(size=(n, 1008)) * 4
    ours = M.inception_score(logits, splits=10)
    ref = isc_features_to_metric(torch.from_numpy(logits), splits=10, shuffle=False)
    assert rel(ours[0], ref["inception_score_mean"]) <= 1e-6
    assert rel(ours[1], ref["inception_score_std"]) <= 1e-6


def test_inception_score_of_confident_distinct_classes_is_the_number_of_classes():
    # Each sample certain of its own class, classes used evenly: p(y) uniform over 10, KL = log 10.
    logits = np.full((100, 10), -1e4)
    logits[np.arange(100), np.arange(100) % 10] = 0.0
    mean, std = M.inception_score(logits, splits=1)
    assert mean == pytest.approx(10.0) and std == 0.0


def test_kid_matches_torch_fidelity_with_the_same_seeded_subsets():
    rng = np.random.default_rng(1)
    real = rng.normal(size=(300, 64))
    fake = rng.normal(size=(240, 64)) + 0.25
    ours = M.kid(real, fake, subsets=30, subset_size=100, seed=7)
    ref = kid_features_to_metric(torch.from_numpy(fake), torch.from_numpy(real), kid_subsets=30, kid_subset_size=100, rng_seed=7, **KID_KWARGS)
    assert rel(ours[0], ref["kernel_inception_distance_mean"]) <= 1e-6
    assert rel(ours[1], ref["kernel_inception_distance_std"]) <= 1e-6
    assert M.kid(real, fake, subsets=30, subset_size=100, seed=7) == ours  # deterministic given the seed


def test_kid_of_two_samples_of_one_distribution_is_near_zero_and_grows_with_a_shift():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(400, 32))
    same = M.kid(real, rng.normal(size=(400, 32)), subsets=20, subset_size=200)[0]
    shifted = M.kid(real, rng.normal(size=(400, 32)) + 1.0, subsets=20, subset_size=200)[0]
    assert abs(same) < 0.02 < shifted


def test_precision_and_recall_match_torch_fidelity():
    rng = np.random.default_rng(3)
    real = rng.normal(size=(250, 16))
    fake = rng.normal(size=(200, 16)) * 0.6 + 0.4
    p, r = M.precision_recall(real, fake, k=3)
    ref = prc_features_to_metric(torch.from_numpy(fake), torch.from_numpy(real), prc_neighborhood=3, prc_batch_size=10000, save_cpu_ram=False, verbose=False)
    assert rel(p, ref["precision"]) <= 1e-6 and rel(r, ref["recall"]) <= 1e-6
    assert p > r  # a narrower generated set: high precision, low recall


def test_density_and_coverage_match_the_authors_prdc_code():
    rng = np.random.default_rng(4)
    real = rng.normal(size=(220, 12))
    fake = rng.normal(size=(180, 12)) + 0.3
    d, c = M.density_coverage(real, fake, k=5)
    ref = compute_prdc(real, fake, 5)
    assert rel(d, float(ref["density"])) <= 1e-6 and rel(c, float(ref["coverage"])) <= 1e-6


def test_too_few_samples_say_so_instead_of_returning_a_number():
    x = np.random.default_rng(5).normal(size=(50, 8))
    with pytest.raises(M.TooFewSamples, match="KID subset size 1000 is larger than the set"):
        M.kid(x, x)
    with pytest.raises(M.TooFewSamples, match="at least 10 samples"):
        M.inception_score(x[:9], splits=10)
    with pytest.raises(M.TooFewSamples, match="more than 3 samples"):
        M.precision_recall(x, x[:3], k=3)
    with pytest.raises(M.TooFewSamples, match="more than 5 samples"):
        M.density_coverage(x[:5], x, k=5)


def test_mean_interval_is_the_student_t_interval():
    from scipy import stats

    v = [0.2, 0.5, 0.9, 0.4, 0.6]
    m, lo, hi = M.mean_interval(v)
    ref = stats.t.interval(0.95, len(v) - 1, loc=np.mean(v), scale=stats.sem(v))
    assert m == pytest.approx(np.mean(v)) and (lo, hi) == pytest.approx(ref)
    assert M.mean_interval([0.3]) == (0.3, None, None)


def test_cohen_kappa_matches_scikit_learn():
    from sklearn.metrics import cohen_kappa_score

    a = [1, 1, 0, 0, 1, 0, 0, 0, 1, 0]
    b = [1, 0, 0, 0, 1, 0, 1, 0, 1, 0]
    table = [sum(x and y for x, y in zip(a, b)), sum(x and not y for x, y in zip(a, b)),
             sum(y and not x for x, y in zip(a, b)), sum(not x and not y for x, y in zip(a, b))]
    assert M.cohen_kappa_2x2(*table) == pytest.approx(cohen_kappa_score(a, b))
