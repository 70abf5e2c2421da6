"""CLIPScore with open_clip, plus the image embeddings reused by FD-CLIP, CMMD and diversity.

score = 100 * max(cos(E_image, E_text), 0), E the model's projected embeddings.
Embeddings are returned L2-normalised as float32. On CUDA the forward runs under bf16
autocast; on CPU in fp32. One model load serves scores and embeddings.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from judging.images import iter_image_batches, load_image
from judging.scorers import (
    LOWER,
    Measure,
    Metric,
    ModelUnavailable,
    Scorer,
    WeightsUnavailable,
    as_item,
    register_scorer,
    resolve_device,
)

if TYPE_CHECKING:
    import torch

__all__ = ["DEFAULT_CLIP_MODEL", "DEFAULT_CLIP_PRETRAINED", "ClipResult", "ClipScorer", "clip_score_from_cosine"]

DEFAULT_CLIP_MODEL = "ViT-B-32"
DEFAULT_CLIP_PRETRAINED = "laion2b_s34b_b79k"
SETTING_PRETRAINED = "ARENA_CLIP_PRETRAINED"
SETTING_MODEL = "ARENA_CLIP_MODEL"


def clip_score_from_cosine(cosine):
    """CLIPScore = 100 * max(cos, 0) (Hessel et al. 2021 with w = 100); scalar or array."""
    return 100.0 * np.maximum(cosine, 0.0)


@dataclass(frozen=True, eq=False)
class ClipResult:
    """CLIPScore in [0, 100] and the L2-normalised image embedding (float32, shape (d,))."""

    score: float
    embedding: np.ndarray
    cosine: float | None = None


@register_scorer
class ClipScorer(Scorer):
    """open_clip model scoring image-prompt agreement and embedding images.

    ``pretrained`` is an open_clip tag for ``model_name`` or a local checkpoint path.
    """

    name = "clip"
    label = "CLIP"
    default_batch_size = 64
    needs_gpu = True
    embeds_images = True
    measures = (Measure("clip_score", "CLIP score", range=(0.0, 100.0)),)
    metrics = (
        Metric(
            "clip_score", "CLIP score",
            "mean over the generator's outputs of 100 · max(cos(image, prompt), 0) with the configured open_clip model",
            range=(0.0, 100.0), per_output="clip_score", digits=2, profile="alignment (CLIP score)",
        ),
        Metric("fd_clip", "FD-CLIP", "Fréchet distance of CLIP image embeddings to the reference set; lower is better", LOWER, (0.0, None), digits=2),
        Metric("cmmd", "CMMD", "MMD² with a Gaussian kernel (σ=10, ×1000) between CLIP embeddings and the reference set; lower is better", LOWER),
        Metric(
            "diversity", "Diversity",
            "mean pairwise cosine distance between CLIP embeddings of a generator's outputs for the same prompt",
            range=(0.0, 2.0), profile="diversity (CLIP)",
        ),
    )

    @classmethod
    def prepare(cls) -> None:
        """Register ARENA_CLIP_MODEL_CONFIG (a custom open_clip architecture), if set."""
        from django.conf import settings

        path = getattr(settings, "ARENA_CLIP_MODEL_CONFIG", "")
        if path:
            import open_clip

            if not os.path.isfile(path):
                raise ModelUnavailable(f"ARENA_CLIP_MODEL_CONFIG points to {path!r}, which is not a file")
            open_clip.add_model_config(path)

    @classmethod
    def record(cls, result: "ClipResult", item) -> tuple[float | None, dict]:
        return float(result.score), ({"cosine": result.cosine} if result.cosine is not None else {})

    def score_embeddings(self, embeddings: np.ndarray, prompts: Sequence[str]) -> list["ClipResult"]:
        """Scores of already computed (cached) normalised image embeddings against prompts."""
        txt = self.encode_texts(list(prompts)).float().cpu().numpy()
        cos = np.einsum("ij,ij->i", np.asarray(embeddings, dtype=np.float32), txt).astype(np.float64)
        scores = clip_score_from_cosine(cos)
        return [ClipResult(score=float(s), embedding=e, cosine=float(c)) for s, e, c in zip(scores, embeddings, cos)]

    @classmethod
    def model_id(cls, config: dict) -> str:
        pretrained = str(config.get("pretrained", ""))
        return f"open_clip:{config.get('model_name', '')}:{os.path.basename(pretrained) or pretrained}"

    def __init__(
        self,
        model_name: str = DEFAULT_CLIP_MODEL,
        pretrained: str = DEFAULT_CLIP_PRETRAINED,
        *,
        batch_size: int | None = None,
        num_workers: int | None = None,
        text_cache_size: int = 4096,
    ):
        super().__init__(batch_size=batch_size, num_workers=num_workers)
        self.model_name = model_name
        self.pretrained = pretrained
        self.text_cache_size = int(text_cache_size)
        self._text_cache: OrderedDict[str, Any] = OrderedDict()
        self.model = None
        self.tokenizer = None
        self.preprocess = None

    # -- construction -------------------------------------------------------------------

    @classmethod
    def from_config(
        cls,
        model_name: str,
        device: "str | torch.device | None" = "cpu",
        *,
        seed: int | None = 0,
        **kwargs: Any,
    ) -> "ClipScorer":
        """A loaded scorer with RANDOMLY INITIALISED weights (tests and benchmarks only)."""
        import open_clip
        import torch

        if seed is not None:
            torch.manual_seed(seed)
        model = open_clip.create_model(model_name, pretrained=None)
        tokenizer = open_clip.get_tokenizer(model_name)
        return cls.from_model(model, tokenizer, device, model_name=model_name, **kwargs)

    @classmethod
    def from_model(
        cls,
        model: "torch.nn.Module",
        tokenizer: Any,
        device: "str | torch.device | None" = None,
        *,
        model_name: str = "",
        **kwargs: Any,
    ) -> "ClipScorer":
        """Wrap an already-built open_clip model and tokenizer; returns a loaded scorer."""
        scorer = cls(model_name=model_name, pretrained="", **kwargs)
        scorer._install(model, tokenizer, resolve_device(device))
        return scorer

    def load(self, device: "str | torch.device | None" = None) -> "ClipScorer":
        if self.model is not None:
            return self
        import open_clip

        dev = resolve_device(device)
        model = self._create_model(open_clip)
        self._install(model, open_clip.get_tokenizer(self.model_name), dev)
        return self

    def _create_model(self, open_clip):
        name, pretrained = self.model_name, self.pretrained
        if name.startswith(("hf-hub:", "local-dir:")):
            try:
                return open_clip.create_model(name)
            except (OSError, RuntimeError, ValueError) as exc:
                raise WeightsUnavailable(
                    setting=SETTING_MODEL,
                    tried=name,
                    reason=f"open_clip could not load {name}: {exc}",
                    fix="to 'local-dir:/path' holding open_clip_config.json and the weights",
                ) from exc
        if name.replace("/", "-") not in open_clip.list_models():
            raise ValueError(f"{SETTING_MODEL}={name!r} is not an open_clip model name")
        tag_cfg = open_clip.get_pretrained_cfg(name.replace("/", "-"), pretrained) if pretrained else {}
        if not tag_cfg and not (pretrained and os.path.isfile(pretrained)):
            raise WeightsUnavailable(
                setting=SETTING_PRETRAINED,
                tried=pretrained,
                reason=f"no CLIP weights: {pretrained!r} is neither an open_clip tag for {name} "
                "nor an existing file",
                fix="to a local checkpoint path",
            )
        try:
            return open_clip.create_model(name, pretrained=pretrained)
        except RuntimeError as exc:
            # open_clip reports a failed fetch as RuntimeError("Failed to download weights ...").
            if not tag_cfg or "download" not in str(exc).lower():
                raise
            source = (tag_cfg.get("hf_hub") or "").rstrip("/") or tag_cfg.get("url") or pretrained
            raise WeightsUnavailable(
                setting=SETTING_PRETRAINED,
                tried=f"{pretrained} -> {source}",
                reason=f"could not fetch CLIP weights for {name} tag {pretrained!r}",
                fix="to a local checkpoint path",
            ) from exc

    def _install(self, model, tokenizer, device: "torch.device") -> None:
        from open_clip.model import get_model_preprocess_cfg
        from open_clip.transform import PreprocessCfg, image_transform_v2, merge_preprocess_dict

        cfg = merge_preprocess_dict(PreprocessCfg(), get_model_preprocess_cfg(model))
        self.preprocess = image_transform_v2(PreprocessCfg(**cfg), is_train=False)
        self.tokenizer = tokenizer
        self.model = model.to(device).eval()
        self.device = device
        self._text_cache.clear()

    # -- scoring ------------------------------------------------------------------------

    def _autocast(self):
        import contextlib

        import torch

        if self.device is not None and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def encode(self, pixels: "torch.Tensor", prompts: Sequence[str] | None = None):
        """Normalised image embeddings (n, d) and, when ``prompts`` is given, the scores (n,).

        ``pixels`` is a batch already preprocessed with ``self.preprocess``.
        """
        import torch

        device = self._require_loaded()
        with torch.inference_mode(), self._autocast():
            img = self.model.encode_image(pixels.to(device, non_blocking=True)).float()
            img = torch.nn.functional.normalize(img, dim=-1)
            scores = None
            if prompts is not None:
                txt = self.encode_texts(prompts)
                cos = (img * txt).sum(dim=-1)
                scores = clip_score_from_cosine(cos.cpu().numpy().astype(np.float64))
        return img.cpu().numpy().astype(np.float32), scores

    def encode_texts(self, prompts: Sequence[str]) -> "torch.Tensor":
        """Normalised float32 text embeddings (n, d) on the model's device.

        Each distinct prompt is encoded once; the last ``text_cache_size`` prompts are kept,
        since every generator is scored on the same prompts.
        """
        import torch

        device = self._require_loaded()
        missing = [p for p in dict.fromkeys(prompts) if p not in self._text_cache]
        if missing:
            with torch.inference_mode(), self._autocast():
                txt = self.model.encode_text(self.tokenizer(missing).to(device)).float()
                txt = torch.nn.functional.normalize(txt, dim=-1)
            found = dict(zip(missing, txt))
        else:
            found = {}
        rows = []
        for p in prompts:
            row = found.get(p)
            if row is None:
                row = self._text_cache[p]
                self._text_cache.move_to_end(p)
            rows.append(row)
        for p, row in found.items():
            self._text_cache[p] = row
            if len(self._text_cache) > self.text_cache_size:
                self._text_cache.popitem(last=False)
        return torch.stack(rows)

    def score_batch(self, items: Sequence[Any]) -> list[ClipResult]:
        """CLIPScore and image embedding for each ``(image, prompt)`` item."""
        import torch

        self._require_loaded()
        items = [as_item(i) for i in items]
        if not items:
            return []
        pixels = torch.stack([self.preprocess(load_image(i.image)) for i in items])
        return self._results(pixels, [i.prompt for i in items])

    def _results(self, pixels, prompts) -> list[ClipResult]:
        emb, scores = self.encode(pixels, prompts)
        return [ClipResult(score=float(s), embedding=e) for s, e in zip(scores, emb)]

    def score_all(self, items: Iterable[Any], *, batch_size: int | None = None) -> list[ClipResult]:
        """Like ``score_batch`` over any number of items, decoding the next batches in
        background threads while the model runs."""
        self._require_loaded()
        items = [as_item(i) for i in items]
        size = int(batch_size or self.batch_size)
        results: list[ClipResult] = []
        for start, pixels in iter_image_batches(
            [i.image for i in items], self.preprocess, batch_size=size, num_workers=self.num_workers
        ):
            results.extend(self._results(pixels, [i.prompt for i in items[start : start + len(pixels)]]))
        return results

    def embed_images(self, images: Sequence[Any], *, batch_size: int | None = None) -> np.ndarray:
        """L2-normalised float32 embeddings (n, d) for image sources, with prefetching."""
        self._require_loaded()
        size = int(batch_size or self.batch_size)
        chunks = [
            self.encode(pixels)[0]
            for _, pixels in iter_image_batches(
                list(images), self.preprocess, batch_size=size, num_workers=self.num_workers
            )
        ]
        dim = self.model.visual.output_dim if hasattr(self.model.visual, "output_dim") else 0
        return np.concatenate(chunks) if chunks else np.zeros((0, dim), np.float32)
