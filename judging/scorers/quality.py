"""Technical image quality without weights: sharpness, exposure, noise, JPEG blockiness and
resolution, from the decoded pixels alone (pure numpy on the luminance channel).

All measures use luminance Y = 0.299 R + 0.587 G + 0.114 B on the 0-255 scale.

- sharpness: variance of the 4-neighbour Laplacian [[0,1,0],[1,-4,1],[0,1,0]] over the
  interior pixels (Pech-Pacheco et al. 2000); higher is sharper.
- clipped: share of pixels with Y <= 2 (crushed shadows) or Y >= 253 (blown highlights);
  both shares are kept in the details. Lower is better.
- noise: Immerkær's (1996) fast estimate of the noise standard deviation,
  sigma = sqrt(pi/2) / (6 (W-2)(H-2)) * sum |Y * N|, N = [[1,-2,1],[-2,4,-2],[1,-2,1]].
- blockiness: mean absolute luminance step across 8-pixel block boundaries divided by the
  mean step between other neighbouring pixels, horizontally and vertically together
  (1 = no block structure; JPEG blocking pushes it above 1). Lower is better.
- megapixels: width × height / 10^6.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from judging.images import load_image
from judging.scorers import LOWER, Measure, Metric, Scorer, as_item, register_scorer

__all__ = ["QualityScorer", "blockiness", "clipped_shares", "luminance", "noise_sigma", "quality_measures", "sharpness"]

_PROFILE = "technical quality (pixels)"


def luminance(rgb: np.ndarray) -> np.ndarray:
    a = np.asarray(rgb, dtype=np.float64)
    if a.ndim == 2:
        return a
    return a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114


def sharpness(y: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian over interior pixels."""
    if min(y.shape) < 3:
        return 0.0
    lap = y[:-2, 1:-1] + y[2:, 1:-1] + y[1:-1, :-2] + y[1:-1, 2:] - 4.0 * y[1:-1, 1:-1]
    return float(lap.var())


def clipped_shares(y: np.ndarray, low: float = 2.0, high: float = 253.0) -> tuple[float, float]:
    """(share of pixels at or below ``low``, share at or above ``high``)."""
    n = y.size
    return float((y <= low).sum() / n), float((y >= high).sum() / n)


def noise_sigma(y: np.ndarray) -> float:
    """Immerkær's noise standard deviation estimate."""
    h, w = y.shape
    if h < 3 or w < 3:
        return 0.0
    conv = (
        y[:-2, :-2] - 2 * y[:-2, 1:-1] + y[:-2, 2:]
        - 2 * y[1:-1, :-2] + 4 * y[1:-1, 1:-1] - 2 * y[1:-1, 2:]
        + y[2:, :-2] - 2 * y[2:, 1:-1] + y[2:, 2:]
    )
    return float(math.sqrt(math.pi / 2.0) * np.abs(conv).sum() / (6.0 * (w - 2) * (h - 2)))


def blockiness(y: np.ndarray, block: int = 8) -> float:
    """Mean |step| across block boundaries / mean |step| elsewhere (1 when the image has no
    boundary structure or is flat)."""
    dx = np.abs(np.diff(y, axis=1))  # step between column j and j+1
    dy = np.abs(np.diff(y, axis=0))
    bx = (np.arange(dx.shape[1]) % block) == block - 1
    by = (np.arange(dy.shape[0]) % block) == block - 1
    across = np.concatenate([dx[:, bx].ravel(), dy[by, :].ravel()])
    inside = np.concatenate([dx[:, ~bx].ravel(), dy[~by, :].ravel()])
    if across.size == 0 or inside.size == 0:
        return 1.0
    a, b = float(across.mean()), float(inside.mean())
    if b == 0.0:
        return 1.0 if a == 0.0 else float("inf")
    return a / b


def quality_measures(rgb: np.ndarray) -> dict[str, float]:
    y = luminance(rgb)
    shadows, highlights = clipped_shares(y)
    return {
        "sharpness": sharpness(y),
        "clipped": shadows + highlights,
        "noise": noise_sigma(y),
        "blockiness": blockiness(y),
        "megapixels": y.shape[0] * y.shape[1] / 1e6,
        "clipped_shadows": shadows,
        "clipped_highlights": highlights,
    }


@register_scorer
class QualityScorer(Scorer):
    """No model: numbers computed from the pixels (see the module docstring)."""

    name = "quality"
    label = "Technical quality (pixels)"
    default_batch_size = 32
    needs_gpu = False
    measures = (
        Measure("sharpness", "sharpness", range=(0.0, None), description="variance of the Laplacian"),
        Measure("clipped", "clipped pixels", LOWER, (0.0, 1.0), description="share of clipped shadows and highlights"),
        Measure("noise", "noise σ", LOWER, (0.0, None), description="Immerkær noise estimate"),
        Measure("blockiness", "JPEG blockiness", LOWER, (0.0, None), description="8×8 boundary step / other steps"),
        Measure("megapixels", "resolution", range=(0.0, None), description="megapixels"),
    )
    metrics = (
        Metric("sharpness", "Sharpness", "mean variance of the Laplacian of the luminance", range=(0.0, None),
               per_output="sharpness", digits=1, profile=_PROFILE),
        Metric("clipped", "Clipped", "mean share of pixels with clipped shadows (Y ≤ 2) or highlights (Y ≥ 253); lower is better",
               LOWER, (0.0, 1.0), per_output="clipped", digits=3, profile=_PROFILE),
        Metric("noise", "Noise σ", "mean Immerkær noise standard deviation of the luminance; lower is better",
               LOWER, (0.0, None), per_output="noise", digits=2, profile=_PROFILE),
        Metric("blockiness", "Blockiness", "mean ratio of luminance steps across 8×8 block boundaries to other steps; lower is better",
               LOWER, (0.0, None), per_output="blockiness", digits=3, profile=_PROFILE),
        Metric("megapixels", "Megapixels", "mean width × height / 10⁶", range=(0.0, None), per_output="megapixels",
               digits=2, profile=_PROFILE),
    )

    @classmethod
    def model_id(cls, config: dict) -> str:
        return "pixels:v1"

    def load(self, device: Any = None) -> "QualityScorer":
        self.device = "cpu"
        return self

    def score_batch(self, items: Sequence[Any]) -> list[dict[str, float]]:
        return [quality_measures(np.asarray(load_image(as_item(i).image))) for i in items]
