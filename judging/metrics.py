"""Distribution metrics on image embeddings: Fréchet distance, CMMD, diversity, Inception
Score, KID, improved precision/recall, density/coverage; a mean with its t interval.

Pure numpy; no torch, no Django. Rows of every feature array are samples. All dense
linear algebra goes through numpy's BLAS/LAPACK only (mixing numpy's and scipy's bundled
OpenBLAS thread pools makes them contend for the same cores).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ratings.stats import cohen_kappa_table

__all__ = [
    "CMMD_SCALE",
    "CMMD_SIGMA",
    "ReferenceStats",
    "TooFewSamples",
    "cmmd",
    "density_coverage",
    "inception_score",
    "kid",
    "mean_interval",
    "precision_recall",
    "frechet_distance",
    "frechet_distance_to_reference",
    "gaussian_stats",
    "mean_pairwise_cosine_distance",
    "prepare_reference",
]

# Jayasumana et al. 2024 (google-research/cmmd/distance.py): RBF bandwidth and display scale.
CMMD_SIGMA = 10.0
CMMD_SCALE = 1000.0

_EPS = np.finfo(np.float64).eps


def _vector(x, name: str) -> np.ndarray:
    v = np.atleast_1d(np.asarray(x, dtype=np.float64))
    if v.ndim != 1:
        raise ValueError(f"{name} must be a vector, got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name} has non-finite values")
    return v


def _covariance(s, name: str, dim: int) -> np.ndarray:
    m = np.atleast_2d(np.asarray(s, dtype=np.float64))
    if m.shape != (dim, dim):
        raise ValueError(f"{name} must have shape {(dim, dim)}, got {m.shape}")
    if not np.all(np.isfinite(m)):
        raise ValueError(f"{name} has non-finite values")
    return m


def _rows(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (samples x features), got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} has non-finite values")
    return a


def gaussian_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (ddof=1) of ``features`` (n x d), in float64.

    Same convention as pytorch-fid: ``mu = mean(X, 0)``, ``sigma = cov(X, rowvar=False)``.
    """
    x = _rows(features, "features")
    if x.shape[0] < 2:
        raise ValueError("gaussian_stats needs at least 2 samples")
    return x.mean(axis=0), np.cov(x, rowvar=False)


@dataclass(frozen=True, eq=False)
class ReferenceStats:
    """Gaussian statistics of a reference set with a cached factorisation.

    ``root`` is W = U_+ diag(sqrt(lambda_+)) from the eigendecomposition
    ``sigma = U diag(lambda) U^T`` (eigenvalues at or below d * eps * lambda_max are
    treated as zero and their columns dropped), so ``sigma = W W^T`` and the symmetric
    square root is ``sigma^1/2 = U diag(sqrt(lambda)) U^T``.  For any PSD ``S``,
    ``W^T S W`` (r x r) has the same non-zero eigenvalues as ``sigma^1/2 S sigma^1/2``.
    """

    mu: np.ndarray
    sigma_trace: float
    root: np.ndarray

    @property
    def dim(self) -> int:
        return self.mu.shape[0]

    @property
    def rank(self) -> int:
        return self.root.shape[1]

    @classmethod
    def from_features(cls, features) -> "ReferenceStats":
        return prepare_reference(*gaussian_stats(features))


def prepare_reference(mu, sigma) -> ReferenceStats:
    """Factorise a reference covariance once (one ``eigh``) for repeated Fréchet distances."""
    mu = _vector(mu, "mu")
    sigma = _covariance(sigma, "sigma", mu.shape[0])
    sym = 0.5 * (sigma + sigma.T)
    lam, u = np.linalg.eigh(sym)
    top = max(float(lam[-1]), 0.0)
    keep = lam > top * lam.shape[0] * _EPS
    root = u[:, keep] * np.sqrt(lam[keep])
    return ReferenceStats(
        mu=mu,
        sigma_trace=float(np.trace(sigma)),
        root=np.ascontiguousarray(root),
    )


def _trace_sqrt_psd(m: np.ndarray) -> float:
    """sum_i sqrt(max(lambda_i, 0)) for a symmetric PSD matrix, rounding noise clipped."""
    if m.shape[0] == 0:
        return 0.0
    lam = np.linalg.eigvalsh(0.5 * (m + m.T))
    top = max(float(lam[-1]), 0.0)
    lam = np.where(lam > top * lam.shape[0] * _EPS, lam, 0.0)
    return float(np.sqrt(lam).sum())


def frechet_distance_to_reference(ref: ReferenceStats, mu, sigma) -> float:
    """Fréchet distance between N(ref.mu, ref.sigma) and N(mu, sigma).

    d^2 = ||mu - mu_r||^2 + tr(sigma_r) + tr(sigma) - 2 tr((sigma_r sigma)^1/2), with
    tr((sigma_r sigma)^1/2) = sum_i sqrt(lambda_i(W^T sigma W)), W cached in ``ref``.
    Exact for singular covariances; tiny negative eigenvalues from rounding count as 0.
    The result is clipped at 0 (it is a squared distance).
    """
    mu = _vector(mu, "mu")
    if mu.shape[0] != ref.dim:
        raise ValueError(f"mu has dimension {mu.shape[0]}, reference has {ref.dim}")
    sigma = _covariance(sigma, "sigma", ref.dim)
    w = ref.root
    tr_covmean = _trace_sqrt_psd(w.T @ (sigma @ w))
    diff = mu - ref.mu
    value = float(diff @ diff) + ref.sigma_trace + float(np.trace(sigma)) - 2.0 * tr_covmean
    return max(value, 0.0)


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (FID on Inception features).

    d^2 = ||mu1 - mu2||^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^1/2), computed
    through the symmetric form sigma1^1/2 sigma2 sigma1^1/2 (see ``ReferenceStats``).
    """
    return frechet_distance_to_reference(prepare_reference(mu1, sigma1), mu2, sigma2)


def _l2_normalise(a: np.ndarray, name: str) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError(f"{name} has an all-zero row; it cannot be L2-normalised")
    return a / norms


def _rbf_kernel_sum(a, a_sq, b, b_sq, gamma: float, same: bool, block: int = 1024) -> float:
    """sum_ij exp(-gamma ||a_i - b_j||^2), evaluated in row blocks to bound memory."""
    total = 0.0
    for start in range(0, a.shape[0], block):
        stop = min(start + block, a.shape[0])
        d2 = a_sq[start:stop, None] + b_sq[None, :] - 2.0 * (a[start:stop] @ b.T)
        np.maximum(d2, 0.0, out=d2)
        if same:
            idx = np.arange(start, stop)
            d2[idx - start, idx] = 0.0
        total += float(np.exp(-gamma * d2).sum())
    return total


def cmmd(x, y, *, unbiased: bool = False) -> float:
    """CMMD (Jayasumana et al. 2024): 1000 * MMD^2 with k(a, b) = exp(-||a - b||^2 / (2 * 10^2)).

    Rows of ``x`` and ``y`` are L2-normalised first (CLIP embeddings). The default is the
    estimator of the official google-research/cmmd code, the minimum-variance (biased)
    form MMD_b^2 = mean(K_xx) + mean(K_yy) - 2 mean(K_xy) with the diagonals included;
    ``unbiased=True`` gives the U-statistic, which drops the K_xx and K_yy diagonals.
    """
    a = _l2_normalise(_rows(x, "x"), "x")
    b = _l2_normalise(_rows(y, "y"), "y")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"x has {a.shape[1]} features, y has {b.shape[1]}")
    n, m = a.shape[0], b.shape[0]
    if min(n, m) < (2 if unbiased else 1):
        raise ValueError("cmmd needs at least 2 samples per set (unbiased) or 1 (biased)")
    gamma = 1.0 / (2.0 * CMMD_SIGMA**2)
    a_sq = np.einsum("ij,ij->i", a, a)
    b_sq = np.einsum("ij,ij->i", b, b)
    s_xx = _rbf_kernel_sum(a, a_sq, a, a_sq, gamma, same=True)
    s_yy = _rbf_kernel_sum(b, b_sq, b, b_sq, gamma, same=True)
    s_xy = _rbf_kernel_sum(a, a_sq, b, b_sq, gamma, same=False)
    if unbiased:
        k_xx = (s_xx - n) / (n * (n - 1))
        k_yy = (s_yy - m) / (m * (m - 1))
    else:
        k_xx = s_xx / (n * n)
        k_yy = s_yy / (m * m)
    k_xy = s_xy / (n * m)
    return float(CMMD_SCALE * (k_xx + k_yy - 2.0 * k_xy))


def mean_pairwise_cosine_distance(x) -> float:
    """Diversity: mean of 1 - cos(x_i, x_j) over all ordered pairs i != j.

    With u_i = x_i / ||x_i|| and s = sum_i u_i: sum_{i != j} u_i . u_j = ||s||^2 - sum_i ||u_i||^2,
    so the mean is computed in O(n d).
    """
    u = _l2_normalise(_rows(x, "x"), "x")
    n = u.shape[0]
    if n < 2:
        raise ValueError("mean_pairwise_cosine_distance needs at least 2 samples")
    s = u.sum(axis=0)
    off_diagonal = float(s @ s) - float(np.einsum("ij,ij->", u, u))
    return 1.0 - off_diagonal / (n * (n - 1))


# --------------------------------------------------------------------------- IS, KID, PRDC


class TooFewSamples(ValueError):
    """A metric asked of fewer samples than it needs; the message says how many it needs."""


def inception_score(logits, splits: int = 10) -> tuple[float, float]:
    """Inception Score (Salimans et al. 2016) from classifier logits (N x C): mean and
    (population) standard deviation over ``splits`` contiguous splits ``[i*N//splits,
    (i+1)*N//splits)`` of exp(mean_x KL(p(y|x) || p(y))), p(y) the split's mean of p(y|x).

    torch-fidelity's ``isc_features_to_metric(..., shuffle=False)`` on the same logits gives
    the same numbers (it feeds the 1008 "unbiased" logits, pool features @ W^T).
    """
    z = _rows(logits, "logits")
    n = z.shape[0]
    splits = int(splits)
    if splits < 1:
        raise ValueError("inception_score needs splits >= 1")
    if n < splits:
        raise TooFewSamples(f"Inception Score with {splits} splits needs at least {splits} samples, got {n}")
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    p = np.exp(log_p)
    scores = []
    for i in range(splits):
        lo, hi = i * n // splits, (i + 1) * n // splits
        q = p[lo:hi].mean(axis=0, keepdims=True)
        kl = (p[lo:hi] * (log_p[lo:hi] - np.log(q))).sum(axis=1).mean()
        scores.append(np.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))


def _mmd2_unbiased_poly(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² (diagonals of K_xx, K_yy dropped; all of K_xy kept) with the cubic
    polynomial kernel k(a, b) = (a·b / d + 1)^3, as torch-fidelity's ``mmd2``."""
    m, d = x.shape
    k_xx = (x @ x.T / d + 1.0) ** 3
    k_yy = (y @ y.T / d + 1.0) ** 3
    k_xy = (x @ y.T / d + 1.0) ** 3
    s_xx = k_xx.sum() - np.trace(k_xx)
    s_yy = k_yy.sum() - np.trace(k_yy)
    return float((s_xx + s_yy) / (m * (m - 1)) - 2.0 * k_xy.sum() / (m * m))


def kid(real, fake, subsets: int = 100, subset_size: int = 1000, *, seed: int = 2020) -> tuple[float, float]:
    """Kernel Inception Distance (Bińkowski et al. 2018): mean and (population) standard
    deviation over ``subsets`` of the unbiased MMD² with the cubic polynomial kernel.

    Each subset draws ``subset_size`` rows of ``fake`` and then of ``real`` without
    replacement from one ``numpy.random.RandomState(seed)``, as torch-fidelity draws
    input 1 (generated) and input 2 (real), so its ``kid_features_to_metric(fake, real,
    rng_seed=seed)`` gives the same numbers.
    """
    r = _rows(real, "real")
    f = _rows(fake, "fake")
    if r.shape[1] != f.shape[1]:
        raise ValueError(f"real has {r.shape[1]} features, fake has {f.shape[1]}")
    subset_size = int(subset_size)
    if subset_size < 2:
        raise ValueError("kid needs subset_size >= 2")
    if len(r) < subset_size or len(f) < subset_size:
        raise TooFewSamples(
            f"KID subset size {subset_size} is larger than the set (real: {len(r)}, generated: {len(f)} samples)"
        )
    rng = np.random.RandomState(seed)
    values = np.empty(int(subsets))
    for i in range(int(subsets)):
        fi = f[rng.choice(len(f), subset_size, replace=False)]
        ri = r[rng.choice(len(r), subset_size, replace=False)]
        values[i] = _mmd2_unbiased_poly(fi, ri)
    return float(values.mean()), float(values.std())


def _pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d2 = np.einsum("ij,ij->i", a, a)[:, None] + np.einsum("ij,ij->i", b, b)[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.maximum(d2, 0.0))


def _kth_neighbour_radii(x: np.ndarray, k: int) -> np.ndarray:
    """Distance of each row to its k-th nearest other row (the row itself is at 0)."""
    d = _pairwise_distances(x, x)
    np.fill_diagonal(d, 0.0)
    return np.partition(d, k, axis=1)[:, k]


def _prdc_inputs(real, fake, k: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    r = _rows(real, "real")
    f = _rows(fake, "fake")
    if r.shape[1] != f.shape[1]:
        raise ValueError(f"real has {r.shape[1]} features, fake has {f.shape[1]}")
    if k < 1:
        raise ValueError(f"{what} needs k >= 1")
    if len(r) <= k or len(f) <= k:
        raise TooFewSamples(f"{what} with k = {k} needs more than {k} samples per set (real: {len(r)}, generated: {len(f)})")
    return r, f


def precision_recall(real, fake, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019).

    precision = share of generated samples within the k-NN radius of some real sample;
    recall = share of real samples within the k-NN radius of some generated sample
    (radius: distance to the k-th nearest other sample of the same set; "within" is <=,
    as the authors' code and torch-fidelity).
    """
    r, f = _prdc_inputs(real, fake, k, "precision_recall")
    r_radii = _kth_neighbour_radii(r, k)
    f_radii = _kth_neighbour_radii(f, k)
    d_rf = _pairwise_distances(r, f)
    precision = float((d_rf <= r_radii[:, None]).any(axis=0).mean())
    recall = float((d_rf <= f_radii[None, :]).any(axis=1).mean())
    return precision, recall


def density_coverage(real, fake, k: int = 5) -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020), as the authors' ``prdc`` code.

    density = (1 / (k M)) sum_j sum_i 1[d(f_j, r_i) < rad_k(r_i)];
    coverage = (1 / N) sum_i 1[min_j d(r_i, f_j) < rad_k(r_i)].
    """
    r, f = _prdc_inputs(real, fake, k, "density_coverage")
    r_radii = _kth_neighbour_radii(r, k)
    d_rf = _pairwise_distances(r, f)
    inside = d_rf < r_radii[:, None]
    density = float(inside.sum(axis=0).mean() / k)
    coverage = float((d_rf.min(axis=1) < r_radii).mean())
    return density, coverage


# --------------------------------------------------------------------------- intervals


def mean_interval(values, level: float = 0.95) -> tuple[float, float | None, float | None]:
    """Mean with its Student-t interval (None bounds with fewer than 2 values)."""
    from scipy import stats as sps

    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        raise TooFewSamples("a mean needs at least one value")
    m = float(v.mean())
    if v.size < 2:
        return m, None, None
    half = float(sps.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    return m, m - half, m + half


def cohen_kappa_2x2(both: int, only_a: int, only_b: int, neither: int) -> float | None:
    """Cohen's kappa of two binary raters from their 2x2 table (None when undefined:
    no items, or chance agreement of 1); ``ratings.stats.cohen_kappa_table`` computes it."""
    kappa = cohen_kappa_table([[both, only_a], [only_b, neither]])
    return None if math.isnan(kappa) else kappa
