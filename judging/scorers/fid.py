"""Inception-v3 pool3 features for FID, exactly as pytorch-fid computes them.

Network: pytorch-fid's FID Inception (torchvision Inception3 with 1008 classes, no aux
logits, Mixed_5b..Mixed_7c replaced by pytorch_fid.inception.FIDInception* blocks), with
the weight file ``pt_inception-2015-12-05-6726825d.pth`` read from ``ARENA_FID_WEIGHTS``;
nothing is downloaded. Features: output of the final adaptive average pool, (N, 2048).
Preprocessing as pytorch-fid: decode to RGB, ToTensor (values in [0, 1]), bilinear resize
to 299x299 (align_corners=False, no antialias), then 2x - 1. Always fp32.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from judging.images import iter_image_batches, load_image
from judging.scorers import LOWER, Metric, Scorer, WeightsUnavailable, as_item, register_scorer, resolve_device

if TYPE_CHECKING:
    import torch
    from PIL import Image

__all__ = [
    "FID_FEATURE_DIM",
    "FID_WEIGHTS_FILENAME",
    "FIDFeatureScorer",
    "build_fid_inception",
    "fid_preprocess",
]

FID_WEIGHTS_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
FID_FEATURE_DIM = 2048
FID_INPUT_SIZE = 299
SETTING_WEIGHTS = "ARENA_FID_WEIGHTS"


def build_fid_inception() -> "torch.nn.Module":
    """pytorch-fid's ``fid_inception_v3()`` structure with default (random) initialisation,
    built without its weight download; load the FID state dict into it."""
    from pytorch_fid import inception as pf

    net = pf._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    net.Mixed_5b = pf.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = pf.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = pf.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = pf.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = pf.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = pf.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = pf.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = pf.FIDInceptionE_1(1280)
    net.Mixed_7c = pf.FIDInceptionE_2(2048)
    return net


def _pool3_module(inception: "torch.nn.Module") -> "torch.nn.Module":
    """Blocks 0-3 of pytorch_fid.inception.InceptionV3 on ``inception``; input in [0, 1]
    at 299x299, output (N, 2048)."""
    from torch import nn

    class FIDInceptionPool3(nn.Module):
        def __init__(self, net: nn.Module):
            super().__init__()
            self.inception = net
            self.blocks = nn.Sequential(
                net.Conv2d_1a_3x3,
                net.Conv2d_2a_3x3,
                net.Conv2d_2b_3x3,
                nn.MaxPool2d(kernel_size=3, stride=2),
                net.Conv2d_3b_1x1,
                net.Conv2d_4a_3x3,
                nn.MaxPool2d(kernel_size=3, stride=2),
                net.Mixed_5b,
                net.Mixed_5c,
                net.Mixed_5d,
                net.Mixed_6a,
                net.Mixed_6b,
                net.Mixed_6c,
                net.Mixed_6d,
                net.Mixed_6e,
                net.Mixed_7a,
                net.Mixed_7b,
                net.Mixed_7c,
                nn.AdaptiveAvgPool2d(output_size=(1, 1)),
            )

        def forward(self, x):
            return self.blocks(2 * x - 1).flatten(1)

    return FIDInceptionPool3(inception)


def fid_preprocess(image: "Image.Image") -> "torch.Tensor":
    """RGB PIL image -> float32 tensor (3, 299, 299) in [0, 1], as pytorch-fid feeds its net:
    ToTensor, then bilinear interpolation to 299x299 with align_corners=False."""
    import torch.nn.functional as F
    from torchvision.transforms.functional import to_tensor

    x = to_tensor(image).unsqueeze(0)
    x = F.interpolate(x, size=(FID_INPUT_SIZE, FID_INPUT_SIZE), mode="bilinear", align_corners=False)
    return x[0]


def _preprocess_any(image: Any) -> "torch.Tensor":
    return fid_preprocess(load_image(image))


@register_scorer
class FIDFeatureScorer(Scorer):
    """Per-image Inception pool3 features; FID itself is ``judging.metrics.frechet_distance``
    on ``gaussian_stats`` of these features."""

    name = "fid"
    label = "Inception (FID, IS, KID, precision/recall)"
    default_batch_size = 50
    needs_gpu = True
    embeds_images = False
    metrics = (
        Metric("fid", "FID", "Fréchet distance of Inception-v3 pool features (pytorch-fid) to the reference set; lower is better", LOWER, (0.0, None), digits=2),
        Metric("inception_score", "IS", "Inception Score exp(E KL(p(y|x) || p(y))) from the same network's 1008 logits, 10 contiguous splits (mean)", range=(1.0, 1008.0), digits=2),
        Metric("kid", "KID", "unbiased MMD² with the cubic polynomial kernel (x·y/d + 1)³ on Inception pool features vs the reference set, mean over 100 subsets as torch-fidelity; lower is better", LOWER, digits=4),
        Metric("precision", "Precision", "improved precision (Kynkäänniemi et al. 2019, k = 3): share of generated samples inside the reference manifold", range=(0.0, 1.0), profile="fidelity (precision)"),
        Metric("recall", "Recall", "improved recall (k = 3): share of reference samples inside the generated manifold", range=(0.0, 1.0)),
        Metric("density", "Density", "density (Naeem et al. 2020, k = 5)", range=(0.0, None)),
        Metric("coverage", "Coverage", "coverage (Naeem et al. 2020, k = 5): share of reference samples whose k-NN ball holds a generated sample", range=(0.0, 1.0)),
    )

    @classmethod
    def model_id(cls, config: dict) -> str:
        return f"inception-fid:{os.path.basename(str(config.get('weights') or '')) or 'unset'}"

    def __init__(self, weights: str = "", *, batch_size: int | None = None, num_workers: int | None = None):
        super().__init__(batch_size=batch_size, num_workers=num_workers)
        self.weights = weights
        self.model = None

    @classmethod
    def from_random_init(
        cls, device: "str | torch.device | None" = "cpu", *, seed: int | None = 0, **kwargs: Any
    ) -> "FIDFeatureScorer":
        """A loaded scorer with RANDOMLY INITIALISED weights (tests and benchmarks only).

        Convolutions get Kaiming-normal weights so activations keep an O(1) scale."""
        import torch

        if seed is not None:
            torch.manual_seed(seed)
        net = build_fid_inception()
        for module in net.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        scorer = cls(**kwargs)
        scorer._install(net, resolve_device(device))
        return scorer

    def load(self, device: "str | torch.device | None" = None) -> "FIDFeatureScorer":
        if self.model is not None:
            return self
        import torch

        path = self.weights
        if not path or not os.path.isfile(path):
            raise WeightsUnavailable(
                setting=SETTING_WEIGHTS,
                tried=path,
                reason=f"FID Inception weights file {FID_WEIGHTS_FILENAME} not found",
                fix=f"to the local path of {FID_WEIGHTS_FILENAME} (pytorch-fid's weights; never downloaded)",
            )
        net = build_fid_inception()
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
        self._install(net, resolve_device(device))
        return self

    def _install(self, inception, device) -> None:
        import torch

        self.model = _pool3_module(inception).to(device=device, dtype=torch.float32).eval()
        self.device = device

    def features_from_tensor(self, pixels: "torch.Tensor") -> np.ndarray:
        """(N, 2048) float32 features for a batch preprocessed by ``fid_preprocess``."""
        import torch

        device = self._require_loaded()
        with torch.inference_mode():
            out = self.model(pixels.to(device=device, dtype=torch.float32, non_blocking=True))
        return out.float().cpu().numpy()

    def logits_from_features(self, features: np.ndarray) -> np.ndarray:
        """(N, 1008) float64 logits of the same network's final layer applied to its pool
        features, without the bias: features @ W.T (torch-fidelity's "logits_unbiased",
        its Inception Score input, as in the original TensorFlow code)."""
        self._require_loaded()
        w = self.model.inception.fc.weight.detach().double().cpu().numpy()
        return np.asarray(features, dtype=np.float64) @ w.T

    def score_batch(self, items: Sequence[Any]) -> list[np.ndarray]:
        """One (2048,) float32 feature vector per item."""
        import torch

        self._require_loaded()
        items = [as_item(i) for i in items]
        if not items:
            return []
        feats = self.features_from_tensor(torch.stack([_preprocess_any(i.image) for i in items]))
        return list(feats)

    def features(self, images: Iterable[Any], *, batch_size: int | None = None) -> np.ndarray:
        """(N, 2048) float32 features for image sources, decoding ahead in threads."""
        self._require_loaded()
        sources = [as_item(i).image for i in images]
        size = int(batch_size or self.batch_size)
        chunks = [
            self.features_from_tensor(pixels)
            for _, pixels in iter_image_batches(
                sources, fid_preprocess, batch_size=size, num_workers=self.num_workers
            )
        ]
        return np.concatenate(chunks) if chunks else np.zeros((0, FID_FEATURE_DIM), np.float32)

    def score_all(self, items: Iterable[Any], *, batch_size: int | None = None) -> list[np.ndarray]:
        return list(self.features(items, batch_size=batch_size))
