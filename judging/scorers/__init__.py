"""Scorer registry.

A scorer turns images (and prompts) into per-output numbers. Each registered class has a
``name``, ``load(device)`` and ``score_batch(items) -> list`` (one result per item, same
order), and declares what it is and what it produces, which services, the board and the
agreement code read instead of knowing scorers by name:

- ``label``, ``needs_gpu`` (routes its jobs to the GPU or the CPU queue),
  ``default_batch_size``, ``model_id(config)`` (the id stored with every score);
- ``measures``: the per-output numbers (``Measure``: name, label, direction, range), the
  first being the one stored as the score's value, the others in its details;
- ``metrics``: the per-generator columns (``Metric``) with their formula, direction and the
  per-output measure they average, if any (used for pairwise agreement with people);
- ``embeds_images``: its per-image vectors are cached and feed diversity / FD / CMMD.

``get_scorer(name, **config)`` builds and loads a scorer once per process and
configuration; models are loaded lazily, never at import time, and this package imports
torch only inside functions.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Iterable, Sequence

if TYPE_CHECKING:
    import torch

__all__ = [
    "Measure",
    "Metric",
    "ModelUnavailable",
    "ScoreItem",
    "Scorer",
    "WeightsUnavailable",
    "as_item",
    "available_scorers",
    "clear_scorer_cache",
    "get_scorer",
    "register_scorer",
    "resolve_device",
    "scorer_class",
    "scorer_classes",
    "metric_catalogue",
]

_BUILTIN_MODULES = (
    "judging.scorers.clip",
    "judging.scorers.vqa",
    "judging.scorers.fid",
    "judging.scorers.ocr",
    "judging.scorers.nsfw",
    "judging.scorers.quality",
)

HIGHER = "higher"
LOWER = "lower"


@dataclass(frozen=True)
class Measure:
    """A per-output number: ``direction`` is "higher" or "lower" (which is better) and
    ``range`` its (low, high) bounds, ``None`` for unbounded."""

    name: str
    label: str
    direction: str = HIGHER
    range: tuple[float | None, float | None] = (None, None)
    description: str = ""

    @property
    def higher_is_better(self) -> bool:
        return self.direction == HIGHER


@dataclass(frozen=True)
class Metric:
    """A per-generator column on the board.

    ``per_output`` names the scorer measure whose per-generator mean (with a 95 % t
    interval) this column is; ``None`` for metrics computed from a whole set (FID, KID...).
    ``profile`` names the quality-profile axis it feeds, if any; ``aggregate`` is "mean"
    (with a 95 % t interval) or "share_at_threshold" (share of outputs at or above the
    study's screening threshold, with a Wilson interval).
    """

    key: str
    label: str
    formula: str
    direction: str = HIGHER
    range: tuple[float | None, float | None] = (None, None)
    per_output: str | None = None
    digits: int = 3
    profile: str = ""
    aggregate: str = "mean"  # or "share_at_threshold": share of outputs with the measure >= the study's screening threshold

    @property
    def higher_is_better(self) -> bool:
        return self.direction == HIGHER


class ModelUnavailable(Exception):
    """A model shipped with a package is missing, corrupt or cannot run on the asked provider."""


class WeightsUnavailable(Exception):
    """Model weights could not be found or fetched.

    ``setting`` names the Django setting to fix, ``tried`` the file path or hub id tried.
    """

    def __init__(self, *, setting: str, tried: str, reason: str, fix: str):
        self.setting = setting
        self.tried = tried
        super().__init__(f"{reason} (tried {tried!r}). Set {setting} {fix}.")


@dataclass(frozen=True)
class ScoreItem:
    """One output to score: an image (path, bytes, file object or PIL image), its prompt,
    optional yes/no questions about it, and the text it should render (manifest ``text``)."""

    image: Any
    prompt: str = ""
    questions: tuple[str, ...] = ()
    text: str = ""


def as_item(obj: Any) -> ScoreItem:
    """Coerce a ScoreItem, an ``(image, prompt[, questions])`` tuple, a mapping with keys
    ``image``/``prompt``/``questions``, or a bare image into a ScoreItem."""
    if isinstance(obj, ScoreItem):
        return obj
    if isinstance(obj, tuple):
        if not 1 <= len(obj) <= 3:
            raise ValueError(f"expected (image, prompt[, questions]), got a tuple of {len(obj)}")
        image, prompt, questions = (tuple(obj) + ("", ()))[:3]
        return ScoreItem(image=image, prompt=prompt or "", questions=tuple(questions or ()))
    if isinstance(obj, dict):
        return ScoreItem(
            image=obj["image"],
            prompt=obj.get("prompt") or "",
            questions=tuple(obj.get("questions") or ()),
            text=obj.get("text") or "",
        )
    return ScoreItem(image=obj)


def resolve_device(device: "str | torch.device | None" = None) -> "torch.device":
    """``None``/``"auto"`` -> CUDA when available, else CPU; anything else as given."""
    import torch

    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class Scorer:
    """Base class: subclasses set ``name`` and implement ``load`` and ``score_batch``."""

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    default_batch_size: ClassVar[int] = 32
    needs_gpu: ClassVar[bool] = True
    embeds_images: ClassVar[bool] = False
    measures: ClassVar[tuple[Measure, ...]] = ()
    metrics: ClassVar[tuple[Metric, ...]] = ()

    @classmethod
    def model_id(cls, config: dict) -> str:
        """The id stored with this scorer's results for a configuration (its settings)."""
        return cls.name

    @classmethod
    def prepare(cls) -> None:
        """Process-wide set-up before the first load (e.g. registering a model config)."""

    @classmethod
    def record(cls, result: Any, item: "ScoreItem") -> tuple[float | None, dict]:
        """(value stored for the output: the first measure, or None when skipped; details
        with the other measures under "measures") of one ``score_batch`` result."""
        if isinstance(result, dict):
            first = cls.measures[0].name
            return float(result[first]), {"measures": {k: float(v) for k, v in result.items() if k != first}}
        return float(result), {}

    @classmethod
    def measure_value(cls, measure: str, value: float | None, details: dict) -> float | None:
        """Read measure ``measure`` back from a stored (value, details)."""
        if value is None:
            return None
        if cls.measures and measure == cls.measures[0].name:
            return value
        v = (details or {}).get("measures", {}).get(measure)
        return None if v is None else float(v)

    def __init__(self, *, batch_size: int | None = None, num_workers: int | None = None):
        self.batch_size = int(batch_size or self.default_batch_size)
        self.num_workers = _default_workers() if num_workers is None else int(num_workers)
        self.device: torch.device | None = None

    @property
    def loaded(self) -> bool:
        return self.device is not None

    def load(self, device: "str | torch.device | None" = None) -> "Scorer":
        """Load the model onto ``device`` (``auto``: CUDA if available); returns self."""
        raise NotImplementedError

    def score_batch(self, items: Sequence[Any]) -> list:
        """Score one batch; returns one result per item, in order."""
        raise NotImplementedError

    def score_all(self, items: Iterable[Any], *, batch_size: int | None = None) -> list:
        """Score any number of items in batches of ``batch_size``."""
        items = list(items)
        size = int(batch_size or self.batch_size)
        results: list = []
        for start in range(0, len(items), size):
            results.extend(self.score_batch(items[start : start + size]))
        return results

    def _require_loaded(self) -> "torch.device":
        if self.device is None:
            raise RuntimeError(f"scorer {self.name!r} is not loaded; call load(device) first")
        return self.device


def _default_workers() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus))


_REGISTRY: dict[str, type[Scorer]] = {}
_CACHE: dict[tuple, Scorer] = {}
_LOCK = threading.RLock()
_builtins_loaded = False


def register_scorer(cls: type[Scorer]) -> type[Scorer]:
    """Class decorator adding ``cls`` to the registry under ``cls.name``."""
    name = getattr(cls, "name", "")
    if not name:
        raise ValueError(f"{cls.__qualname__} has no scorer name")
    with _LOCK:
        existing = _REGISTRY.get(name)
        if existing is not None and existing.__qualname__ != cls.__qualname__:
            raise ValueError(f"scorer name {name!r} is already taken by {existing.__qualname__}")
        _REGISTRY[name] = cls
    return cls


def _load_builtins() -> None:
    global _builtins_loaded
    if _builtins_loaded:
        return
    import importlib

    for module in _BUILTIN_MODULES:
        importlib.import_module(module)
    _builtins_loaded = True


def scorer_class(name: str) -> type[Scorer]:
    """The registered class ``name`` (its declarations; nothing is loaded)."""
    _load_builtins()
    with _LOCK:
        try:
            return _REGISTRY[name]
        except KeyError:
            raise KeyError(f"unknown scorer {name!r}; available: {sorted(_REGISTRY)}") from None


def scorer_classes() -> list[type[Scorer]]:
    """Registered classes in registration order (built-ins first)."""
    _load_builtins()
    with _LOCK:
        return list(_REGISTRY.values())


def metric_catalogue() -> list[tuple[type[Scorer], Metric]]:
    """Every declared per-generator metric with the scorer that declares it, board order."""
    return [(cls, m) for cls in scorer_classes() for m in cls.metrics]


def available_scorers() -> list[str]:
    """Names of all registered scorers, sorted."""
    _load_builtins()
    with _LOCK:
        return sorted(_REGISTRY)


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def get_scorer(name: str, **config: Any) -> Scorer:
    """The loaded scorer ``name`` for this configuration, built once per process.

    ``device`` (default ``"auto"``) is passed to ``load``; every other keyword goes to the
    scorer's constructor.
    """
    _load_builtins()
    device = config.pop("device", None) or "auto"
    key = (name, str(device), _freeze(config))
    with _LOCK:
        scorer = _CACHE.get(key)
        if scorer is None:
            try:
                cls = _REGISTRY[name]
            except KeyError:
                raise KeyError(f"unknown scorer {name!r}; available: {sorted(_REGISTRY)}") from None
            scorer = cls(**config)
            scorer.load(device)
            _CACHE[key] = scorer
        return scorer


def clear_scorer_cache() -> None:
    """Forget every loaded scorer (their models are freed when no longer referenced)."""
    with _LOCK:
        _CACHE.clear()
