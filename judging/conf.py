"""Scorer settings from Django settings, read lazily (inside functions, never at import).

ARENA_CLIP_MODEL       open_clip model name                      (default ViT-B-32)
ARENA_CLIP_PRETRAINED  open_clip tag or local checkpoint path    (default laion2b_s34b_b79k)
ARENA_VQA_MODEL        HF hub id or local dir, image-text-to-text (default Qwen/Qwen2-VL-2B-Instruct)
ARENA_FID_WEIGHTS      local path of pt_inception-2015-12-05-6726825d.pth (default "": unset)
ARENA_DEVICE           auto | cpu | cuda | cuda:N                (default auto)
ARENA_ONNX_PROVIDER    onnxruntime execution provider for OCR and safety (default CPUExecutionProvider)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from judging.scorers.clip import DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED
from judging.scorers.vqa import DEFAULT_VQA_MODEL

__all__ = ["ScorerSettings", "configured_scorer", "scorer_settings"]

_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


@dataclass(frozen=True)
class ScorerSettings:
    clip_model: str = DEFAULT_CLIP_MODEL
    clip_pretrained: str = DEFAULT_CLIP_PRETRAINED
    vqa_model: str = DEFAULT_VQA_MODEL
    fid_weights: str = ""
    device: str = "auto"
    onnx_provider: str = "CPUExecutionProvider"

    def scorer_config(self, name: str) -> dict[str, Any]:
        """Keyword arguments for ``judging.scorers.get_scorer(name, **config)``."""
        configs = {
            "clip": {"model_name": self.clip_model, "pretrained": self.clip_pretrained},
            "vqa": {"model": self.vqa_model},
            "fid": {"weights": self.fid_weights},
            "ocr": {"provider": self.onnx_provider},
            "nsfw": {"provider": self.onnx_provider},
            "quality": {},
        }
        try:
            config = configs[name]
        except KeyError:
            raise KeyError(f"no settings for scorer {name!r}; known: {sorted(configs)}") from None
        return {**config, "device": self.device}


def _text(source: Any, name: str, default: str) -> str:
    from django.core.exceptions import ImproperlyConfigured

    value = getattr(source, name, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ImproperlyConfigured(f"{name} must be a string, got {type(value).__name__}")
    return value.strip()


def scorer_settings(source: Any = None) -> ScorerSettings:
    """Read the ARENA_* scorer settings from ``source`` (default ``django.conf.settings``).

    Raises ImproperlyConfigured for a value of the wrong type or an unknown device.
    """
    from django.core.exceptions import ImproperlyConfigured

    if source is None:
        from django.conf import settings as source

    device = _text(source, "ARENA_DEVICE", "auto") or "auto"
    if not _DEVICE_RE.match(device):
        raise ImproperlyConfigured(f"ARENA_DEVICE must be auto, cpu, cuda or cuda:N, got {device!r}")
    return ScorerSettings(
        clip_model=_text(source, "ARENA_CLIP_MODEL", DEFAULT_CLIP_MODEL) or DEFAULT_CLIP_MODEL,
        clip_pretrained=(
            _text(source, "ARENA_CLIP_PRETRAINED", DEFAULT_CLIP_PRETRAINED) or DEFAULT_CLIP_PRETRAINED
        ),
        vqa_model=_text(source, "ARENA_VQA_MODEL", DEFAULT_VQA_MODEL) or DEFAULT_VQA_MODEL,
        fid_weights=_text(source, "ARENA_FID_WEIGHTS", ""),
        device=device,
        onnx_provider=_text(source, "ARENA_ONNX_PROVIDER", "CPUExecutionProvider") or "CPUExecutionProvider",
    )


def configured_scorer(name: str):
    """The process-wide loaded scorer ``name`` configured from Django settings."""
    from judging.scorers import get_scorer

    return get_scorer(name, **scorer_settings().scorer_config(name))
