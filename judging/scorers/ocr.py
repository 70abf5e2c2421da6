"""Text rendering: does the image show the text the prompt asks for? PP-OCRv4 on CPU.

Model: PP-OCRv4 detection and recognition (and the PP-OCR mobile direction classifier) as
ONNX files inside the ``rapidocr-onnxruntime`` wheel, run with onnxruntime; nothing is
downloaded. Recognised lines are joined top to bottom with spaces.

Target text (``target_text``): the manifest's ``text`` column when given; otherwise every
span of the prompt in double quotes ("…" or “…”), joined with spaces in prompt order.
A prompt with neither has no target and its outputs are skipped (no score), not scored 0.

Measures per output, as OneIG-Bench defines them (OneIG-Benchmark,
``scripts/text/text_utils.py`` and ``text_score.py``): both strings are normalised by
``oneig_normalise`` (keep letters, digits, whitespace and accented Latin letters; collapse
whitespace), then

- edit distance ED: Levenshtein distance between OCR text and target (lower is better);
- completion rate CR: 1 when ED = 0, else 0;
- word accuracy WAC: matched words / target words, matched = multiset intersection of the
  whitespace-split words (case-sensitive);
- text score = 1 - min(100, ED) · (1 - CR) · (1 - WAC) / 100 (OneIG's English text score,
  MAX_EDIT_DISTANCE = 100), the value stored for the output.

An image in which the OCR finds no text scores ED = len(target), CR = 0, WAC = 0, with the
reason recorded.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from judging.images import load_image
from judging.scorers import LOWER, Measure, Metric, ModelUnavailable, Scorer, as_item, register_scorer

__all__ = [
    "MAX_EDIT_DISTANCE",
    "OcrResult",
    "OcrScorer",
    "levenshtein",
    "oneig_normalise",
    "onnx_provider_check",
    "target_text",
    "text_measures",
]

MAX_EDIT_DISTANCE = 100
SETTING_PROVIDER = "ARENA_ONNX_PROVIDER"
_QUOTED = re.compile(r'"([^"]+)"|\u201c([^\u201d]+)\u201d')
_KEEP = re.compile(r"[^\u4e00-\u9fa5a-zA-Z0-9\sàâäéèêëîïôöùûüçÀÂÄÉÈÊËÎÏÔÖÙÛÜÇ]")


def target_text(prompt: str, text: str = "") -> str:
    """The text an image for ``prompt`` should render: ``text`` if given, else the prompt's
    double-quoted spans joined with spaces; "" when there is none."""
    if text and text.strip():
        return text.strip()
    spans = [(a or b).strip() for a, b in _QUOTED.findall(prompt or "")]
    return " ".join(s for s in spans if s)


def oneig_normalise(s: str) -> str:
    """OneIG-Bench's ``preprocess_string`` for non-Chinese text: drop every character but
    letters, digits, whitespace and accented Latin letters; collapse whitespace; strip."""
    return re.sub(r"\s+", " ", _KEEP.sub("", s)).strip()


def levenshtein(a: str, b: str) -> int:
    """Edit distance with unit insert, delete and substitute costs."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def text_measures(recognised: str, target: str) -> dict[str, float]:
    """OneIG-Bench's per-image ED, CR, WAC and text score of OCR text against the target."""
    ocr = oneig_normalise(recognised)
    gt = oneig_normalise(target)
    ed = levenshtein(ocr, gt)
    cr = 1.0 if ed == 0 else 0.0
    gt_words = Counter(gt.split())
    matched = sum((gt_words & Counter(ocr.split())).values())
    total = sum(gt_words.values())
    wac = matched / total if total else 0.0
    score = 1.0 - min(MAX_EDIT_DISTANCE, ed) * (1.0 - cr) * (1.0 - wac) / MAX_EDIT_DISTANCE
    return {
        "text_score": score,
        "edit_distance": float(ed),
        "completion_rate": cr,
        "word_accuracy": wac,
        "matched_words": matched,
        "target_words": total,
    }


def reading_order(lines: list[dict]) -> list[dict]:
    """Boxes in reading order: rows top to bottom (a box joins a row when its vertical centre
    lies within the row's first box), each row left to right."""
    def top(ln):
        return min(p[1] for p in ln["box"])

    def bottom(ln):
        return max(p[1] for p in ln["box"])

    rows: list[list[dict]] = []
    for ln in sorted(lines, key=lambda ln: (top(ln) + bottom(ln)) / 2):
        centre = (top(ln) + bottom(ln)) / 2
        if rows and top(rows[-1][0]) <= centre <= bottom(rows[-1][0]):
            rows[-1].append(ln)
        else:
            rows.append([ln])
    return [ln for row in rows for ln in sorted(row, key=lambda ln: min(p[0] for p in ln["box"]))]


def onnx_provider_check(provider: str) -> None:
    """Raise ModelUnavailable unless onnxruntime offers ``provider`` here."""
    import onnxruntime

    available = onnxruntime.get_available_providers()
    if provider not in available:
        raise ModelUnavailable(
            f"onnxruntime execution provider {provider!r} is not available here "
            f"(available: {', '.join(available)}); set {SETTING_PROVIDER} to one of them"
        )


def model_file_check(path: str, what: str) -> str:
    if not os.path.isfile(path):
        raise ModelUnavailable(f"{what} model file {path} is missing; reinstall the package that ships it")
    if os.path.getsize(path) == 0:
        raise ModelUnavailable(f"{what} model file {path} is empty; reinstall the package that ships it")
    return path


@dataclass(frozen=True)
class OcrResult:
    """Measures of one output (None when it has no target text: skipped) and what the
    OCR read, for staff."""

    target: str
    recognised: str
    measures: dict[str, float] | None = None
    reason: str = ""
    lines: list[dict] = field(default_factory=list)

    @property
    def skipped(self) -> bool:
        return self.measures is None


@register_scorer
class OcrScorer(Scorer):
    """PP-OCRv4 (rapidocr-onnxruntime) text rendering against the target text."""

    name = "ocr"
    label = "Text rendering (PP-OCRv4)"
    default_batch_size = 16
    needs_gpu = False
    measures = (
        Measure("text_score", "text score", range=(0.0, 1.0),
                description="1 - min(100, ED)·(1 - CR)·(1 - WAC)/100 (OneIG-Bench)"),
        Measure("edit_distance", "edit distance", LOWER, (0.0, None)),
        Measure("completion_rate", "completion rate", range=(0.0, 1.0)),
        Measure("word_accuracy", "word accuracy", range=(0.0, 1.0)),
    )
    metrics = (
        Metric(
            "text_rendering", "Text rendering",
            "mean over outputs with target text of OneIG-Bench's text score 1 - min(100, ED)·(1 - CR)·(1 - WAC)/100, "
            "PP-OCRv4 reading the image",
            range=(0.0, 1.0), per_output="text_score", profile="text rendering (OCR)",
        ),
        Metric("ocr_completion", "Text complete", "share of outputs whose OCR text equals the target text (OneIG-Bench completion rate)",
               range=(0.0, 1.0), per_output="completion_rate", digits=2),
        Metric("ocr_word_accuracy", "Word accuracy", "mean share of target words the OCR found (OneIG-Bench word accuracy)",
               range=(0.0, 1.0), per_output="word_accuracy", digits=2),
        Metric("ocr_edit_distance", "Edit distance", "mean Levenshtein distance between OCR text and target text; lower is better",
               LOWER, (0.0, None), per_output="edit_distance", digits=1),
    )

    def __init__(self, provider: str = "CPUExecutionProvider", *, threads: int = 0,
                 model_dir: str = "", batch_size: int | None = None, num_workers: int | None = None):
        super().__init__(batch_size=batch_size, num_workers=num_workers)
        self.provider = provider or "CPUExecutionProvider"
        self.threads = int(threads)
        self.model_dir = model_dir
        self.engine = None

    @classmethod
    def model_id(cls, config: dict) -> str:
        return "rapidocr-onnxruntime:PP-OCRv4"

    @classmethod
    def record(cls, result: OcrResult, item) -> tuple[float | None, dict]:
        details = {"target": result.target, "recognised": result.recognised, "reason": result.reason}
        if result.skipped:
            return None, {**details, "skipped": result.reason}
        m = result.measures
        return float(m["text_score"]), {**details, "measures": {k: v for k, v in m.items() if k != "text_score"}}

    def _paths(self) -> dict[str, str]:
        import rapidocr_onnxruntime

        folder = self.model_dir or os.path.join(os.path.dirname(rapidocr_onnxruntime.__file__), "models")
        return {
            "det_model_path": model_file_check(os.path.join(folder, "ch_PP-OCRv4_det_infer.onnx"), "PP-OCRv4 detection"),
            "rec_model_path": model_file_check(os.path.join(folder, "ch_PP-OCRv4_rec_infer.onnx"), "PP-OCRv4 recognition"),
            "cls_model_path": model_file_check(os.path.join(folder, "ch_ppocr_mobile_v2.0_cls_infer.onnx"), "PP-OCR direction"),
        }

    def load(self, device: Any = None) -> "OcrScorer":
        if self.engine is not None:
            return self
        onnx_provider_check(self.provider)
        from rapidocr_onnxruntime import RapidOCR

        cuda = self.provider == "CUDAExecutionProvider"
        kwargs: dict[str, Any] = {**self._paths(), "det_use_cuda": cuda, "cls_use_cuda": cuda, "rec_use_cuda": cuda}
        if self.threads > 0:
            kwargs["intra_op_num_threads"] = self.threads
        try:
            self.engine = RapidOCR(**kwargs)
        except Exception as exc:  # onnxruntime reports a corrupt file as its own exception types
            raise ModelUnavailable(f"PP-OCRv4 could not be loaded from the rapidocr-onnxruntime wheel: {exc}") from exc
        self.device = self.provider
        return self

    @property
    def loaded(self) -> bool:
        return self.engine is not None

    def read(self, image: Any) -> list[dict]:
        """Recognised lines, top to bottom: [{"text", "confidence", "box"}]."""
        if self.engine is None:
            raise RuntimeError("scorer 'ocr' is not loaded; call load() first")
        pixels = np.asarray(load_image(image))[:, :, ::-1].copy()  # RapidOCR reads BGR like cv2
        found, _ = self.engine(pixels)
        lines = []
        for box, text, conf in found or []:
            lines.append({"text": str(text), "confidence": float(conf), "box": [[float(x), float(y)] for x, y in box]})
        return reading_order(lines)

    def score_one(self, image: Any, target: str) -> OcrResult:
        if not target:
            return OcrResult(target="", recognised="", reason="no target text: neither a text column nor a quoted span in the prompt")
        lines = self.read(image)
        recognised = " ".join(ln["text"] for ln in lines)
        reason = "" if lines else "no text found in the image"
        return OcrResult(target=target, recognised=recognised, measures=text_measures(recognised, target), reason=reason, lines=lines)

    def score_batch(self, items: Sequence[Any]) -> list[OcrResult]:
        """One OcrResult per item; the item's ``text`` (or quoted spans of its prompt) is the target."""
        items = [as_item(i) for i in items]
        return [self.score_one(i.image, target_text(i.prompt, i.text)) for i in items]
