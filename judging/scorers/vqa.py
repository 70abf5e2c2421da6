"""VQAScore (Lin et al. 2024) with a HuggingFace image-text-to-text model.

VQAScore(image, prompt) = P("Yes" | image, Q(prompt)) with
Q(prompt) = 'Does this figure show "{prompt}"? Please answer yes or no.'
The question is formatted with the processor's chat template (one user turn holding the
image and the question, generation prompt appended). With z the model's raw next-token
logits at the position after that text, P("Yes") = softmax(z)[t_yes], a softmax over the
full vocabulary, and t_yes the first token of ``tokenizer.encode("Yes",
add_special_tokens=False)``. This is how t2v_metrics scores its HuggingFace chat models
(first-step scores of ``generate``, full-vocabulary softmax, ``encode(answer)[0]``); here the
logits come from a plain forward pass, so no logits processor alters them. Batches are
left-padded, so the last position is the next-token position of every row.

Decomposed prompts: ``score_questions(image, questions)`` gives P("Yes") per yes/no question
(asked verbatim), and ``yes_share`` the share answered yes (p > 0.5).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from judging.images import iter_image_batches, load_image
from judging.scorers import Measure, Metric, Scorer, WeightsUnavailable, as_item, register_scorer, resolve_device

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_VQA_MODEL",
    "QUESTION_TEMPLATE",
    "VQAResult",
    "VQAScorer",
    "image_text_model_load",
    "YES_THRESHOLD",
    "says_yes",
    "yes_share",
]

DEFAULT_VQA_MODEL = "Qwen/Qwen2-VL-2B-Instruct"
QUESTION_TEMPLATE = 'Does this figure show "{}"? Please answer yes or no.'
ANSWER = "Yes"
SETTING_MODEL = "ARENA_VQA_MODEL"


YES_THRESHOLD = 0.5


def says_yes(probability: float, threshold: float = YES_THRESHOLD) -> bool:
    """The VQA model's answer to a yes/no question: yes when P(yes) > threshold."""
    return float(probability) > threshold


def yes_share(probabilities: Sequence[float], threshold: float = YES_THRESHOLD) -> float:
    """Share of questions answered yes (``says_yes``)."""
    p = np.asarray(probabilities, dtype=np.float64)
    if p.size == 0:
        raise ValueError("yes_share needs at least one probability")
    return float(np.mean([says_yes(x, threshold) for x in p]))


def image_text_model_load(model_id: str, device: "str | torch.device | None", *, setting: str, what: str):
    """(model, processor, device) of a transformers image-text-to-text model from a hub id or a
    local folder (bfloat16 on CUDA, float32 on CPU). Raises WeightsUnavailable naming
    ``setting`` when it cannot be loaded or is not an image-text-to-text model."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    dev = resolve_device(device)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    try:
        processor = AutoProcessor.from_pretrained(model_id)
        model = AutoModelForImageTextToText.from_pretrained(model_id, dtype=dtype)
    except (OSError, ValueError, KeyError) as exc:
        raise WeightsUnavailable(
            setting=setting,
            tried=model_id,
            reason=f"could not load the {what} and its processor as an image-text-to-text model: {exc}",
            fix="to a local directory holding an image-text-to-text model and its processor (save_pretrained)",
        ) from exc
    if getattr(processor, "image_processor", None) is None:
        raise WeightsUnavailable(
            setting=setting, tried=model_id, reason=f"the {what}'s processor takes no images",
            fix="to an image-text-to-text model (with an image processor)",
        )
    return model, processor, dev


@dataclass(frozen=True)
class VQAResult:
    """VQAScore for the prompt, P(yes) per extra question, and their yes share (None
    without questions)."""

    score: float
    question_probabilities: tuple[float, ...] = ()
    yes_share: float | None = None


@register_scorer
class VQAScorer(Scorer):
    """``model`` is a hub id or a local directory holding the model and its processor."""

    name = "vqa"
    label = "VQAScore"
    default_batch_size = 8
    needs_gpu = True
    measures = (Measure("vqascore", "VQAScore", range=(0.0, 1.0)),)
    metrics = (
        Metric(
            "vqascore", "VQAScore",
            "mean P(\"Yes\") to 'Does this figure show \"{prompt}\"? Please answer yes or no.' from the VQA model's next-token logits",
            range=(0.0, 1.0), per_output="vqascore", profile="alignment (VQAScore)",
        ),
    )

    @classmethod
    def record(cls, result: "VQAResult", item) -> tuple[float | None, dict]:
        details = {}
        if item.questions:
            details = {
                "questions": [{"question": q, "p_yes": float(p)} for q, p in zip(item.questions, result.question_probabilities)],
                "yes_share": float(result.yes_share),
            }
        return float(result.score), details

    @classmethod
    def model_id(cls, config: dict) -> str:
        return f"vqa:{config.get('model', '')}"

    def __init__(
        self,
        model: str = DEFAULT_VQA_MODEL,
        *,
        question_template: str = QUESTION_TEMPLATE,
        answer: str = ANSWER,
        batch_size: int | None = None,
        num_workers: int | None = None,
    ):
        super().__init__(batch_size=batch_size, num_workers=num_workers)
        self.model_id = model
        self.question_template = question_template
        self.answer = answer
        self.model = None
        self.processor = None
        self.yes_token_id: int | None = None
        self._logits_to_keep = False

    @classmethod
    def from_model(
        cls, model: Any, processor: Any, device: "str | torch.device | None" = None, **kwargs: Any
    ) -> "VQAScorer":
        """Wrap an already-built model and processor (kept in their dtype); returns a loaded scorer."""
        scorer = cls(model=getattr(model, "name_or_path", "") or "", **kwargs)
        scorer._install(model, processor, resolve_device(device))
        return scorer

    def load(self, device: "str | torch.device | None" = None) -> "VQAScorer":
        if self.model is not None:
            return self
        model, processor, dev = image_text_model_load(self.model_id, device, setting=SETTING_MODEL, what="VQA model")
        self._install(model, processor, dev)
        return self

    def _install(self, model, processor, device) -> None:
        tokenizer = processor.tokenizer
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        ids = tokenizer.encode(self.answer, add_special_tokens=False)
        if not ids:
            raise ValueError(f"the tokenizer maps the answer {self.answer!r} to no token")
        self.yes_token_id = int(ids[0])
        self._logits_to_keep = "logits_to_keep" in inspect.signature(model.forward).parameters
        self.processor = processor
        self.model = model.to(device).eval()
        self.device = device

    # -- prompts ------------------------------------------------------------------------

    def question(self, prompt: str) -> str:
        return self.question_template.format(prompt)

    def chat_text(self, question: str) -> str:
        """The model input text for one image and one question (generation prompt appended)."""
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        if getattr(self.processor, "chat_template", None):
            return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        image_token = getattr(self.processor, "image_token", "<image>")
        return f"{image_token}\n{question}"

    # -- scoring ------------------------------------------------------------------------

    def yes_probabilities(self, images: Sequence[Any], questions: Sequence[str]) -> np.ndarray:
        """P(yes) for each (image, question) pair, float64 array, computed in batches."""
        if len(images) != len(questions):
            raise ValueError(f"{len(images)} images but {len(questions)} questions")
        self._require_loaded()
        out = np.empty(len(questions), dtype=np.float64)
        for start in range(0, len(questions), self.batch_size):
            stop = start + self.batch_size
            out[start:stop] = self._forward(
                [load_image(i) for i in images[start:stop]], list(questions[start:stop])
            )
        return out

    def _forward(self, images: list, questions: list[str]) -> np.ndarray:
        import torch

        device = self.device
        texts = [self.chat_text(q) for q in questions]
        inputs = self.processor(text=texts, images=images, return_tensors="pt", padding=True)
        dtype = self.model.dtype
        batch = {
            k: (v.to(device=device, dtype=dtype) if v.is_floating_point() else v.to(device))
            for k, v in inputs.items()
            if isinstance(v, torch.Tensor)
        }
        kwargs = {"logits_to_keep": 1} if self._logits_to_keep else {}
        with torch.inference_mode():
            logits = self.model(**batch, **kwargs).logits[:, -1, :].float()
            p = torch.log_softmax(logits, dim=-1)[:, self.yes_token_id].exp()
        return p.cpu().double().numpy()

    def score_questions(self, image: Any, questions: Sequence[str]) -> list[float]:
        """P(yes) for each yes/no question about one image (questions asked verbatim)."""
        if not questions:
            return []
        decoded = load_image(image)
        return self.yes_probabilities([decoded] * len(questions), list(questions)).tolist()

    def score_batch(self, items: Sequence[Any]) -> list[VQAResult]:
        """VQAScore of each item's prompt, plus P(yes) for its questions, if any."""
        self._require_loaded()
        items = [as_item(i) for i in items]
        return self._score_decoded(items, [load_image(i.image) for i in items])

    def _score_decoded(self, items: list, images: list) -> list[VQAResult]:
        pair_images: list = []
        pair_questions: list[str] = []
        for item, image in zip(items, images):
            for q in (self.question(item.prompt), *item.questions):
                pair_images.append(image)
                pair_questions.append(q)
        probs = self.yes_probabilities(pair_images, pair_questions).tolist()
        results, pos = [], 0
        for item in items:
            main, extra = probs[pos], tuple(probs[pos + 1 : pos + 1 + len(item.questions)])
            pos += 1 + len(item.questions)
            share = yes_share(extra) if extra else None
            results.append(VQAResult(score=main, question_probabilities=extra, yes_share=share))
        return results

    def score_all(self, items: Iterable[Any], *, batch_size: int | None = None) -> list[VQAResult]:
        """Like ``score_batch`` over any number of items, decoding ahead in threads."""
        self._require_loaded()
        items = [as_item(i) for i in items]
        size = int(batch_size or self.batch_size)
        results: list[VQAResult] = []
        for start, images in iter_image_batches(
            [i.image for i in items], None, batch_size=size, num_workers=self.num_workers
        ):
            results.extend(self._score_decoded(items[start : start + len(images)], images))
        return results
