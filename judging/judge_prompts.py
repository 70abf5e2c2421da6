"""What an MLLM judge is asked, and how its answer is read (VIEScore-style).

A rubric per criterion says what to look at and what the lowest and highest scores mean. Each
request holds the image(s), the generation prompt, the criterion's own question to annotators and
the rubric; it asks for reasoning first and then one JSON object on the last line:

    rating 1-5   {"score": 1..5}
    good / bad   {"verdict": "good" | "bad"}
    pairwise     {"choice": "first" | "second" | "tie"}
    question     {"answer": "yes" | "no"}

The judge never learns which generator made an image: nothing but pixels, the prompt and the
criterion is sent. Pure Python: no Django, no torch.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

__all__ = [
    "DEFAULT_RUBRICS",
    "RubricError",
    "Verdict",
    "default_rubric",
    "parse_verdict",
    "request_text",
    "retry_text",
    "rubric_scale",
]

SCALE = (1, 5)

DEFAULT_RUBRICS = {
    "aesthetics": (
        "Judge the image's perceptual quality and aesthetics only, not whether it matches the prompt: how natural "
        "it looks, lighting, colour, composition, and the absence of artifacts (distorted faces, hands or bodies, "
        "blur, noise, broken textures, unnatural shapes).\n"
        "1: severely distorted or broken, unpleasant to look at\n"
        "2: clearly visible artifacts or a poor composition\n"
        "3: acceptable, with noticeable flaws\n"
        "4: good, with minor flaws only\n"
        "5: natural, clean and pleasing, with no visible artifact"
    ),
    "alignment": (
        "Judge how faithfully the image follows the prompt (semantic consistency): every object, attribute, count, "
        "spatial relation and piece of text the prompt asks for, and nothing that contradicts it. Ignore image "
        "quality unless it hides what the prompt asks for.\n"
        "1: unrelated to the prompt\n"
        "2: a few elements of the prompt, most missing or wrong\n"
        "3: the main subject, but several details missing or wrong\n"
        "4: almost everything, one minor detail missing or wrong\n"
        "5: everything the prompt asks for, correct and complete"
    ),
    "plausibility": (
        "Judge how physically and anatomically plausible the image is: correct anatomy, object shapes, "
        "perspective, shadows and reflections, and no melted, merged or duplicated parts.\n"
        "1: severely implausible, many broken shapes\n"
        "2: several clear implausibilities\n"
        "3: mostly plausible, one clear flaw\n"
        "4: plausible, minor flaws on close inspection\n"
        "5: fully plausible"
    ),
}

_GENERIC = (
    "Judge the image on this criterion: {name}. {description}\n"
    "1: very poor on this criterion\n"
    "2: poor\n"
    "3: acceptable\n"
    "4: good\n"
    "5: excellent on this criterion"
)

_ANCHOR = re.compile(r"^\s*(\d+)\s*[:=.)\u2013\u2014-]", re.MULTILINE)


class RubricError(ValueError):
    """A rubric that cannot be used: it says nothing of the score range."""


def default_rubric(slug: str, name: str, description: str = "") -> str:
    return DEFAULT_RUBRICS.get(slug) or _GENERIC.format(name=name, description=description).replace(" \n", "\n")


def rubric_scale(text: str, *, criterion: str = "") -> tuple[int, int]:
    """The score range the rubric describes: it must give a line for the lowest (1) and the
    highest (5) score, such as "1: ..." and "5: ...". Raises RubricError otherwise."""
    anchors = {int(m.group(1)) for m in _ANCHOR.finditer(text or "")}
    if SCALE[0] not in anchors or SCALE[1] not in anchors:
        where = f" of criterion {criterion!r}" if criterion else ""
        raise RubricError(
            f"The rubric{where} has no score range: give a line for the lowest and the highest score, "
            f"e.g. \"{SCALE[0]}: ...\" and \"{SCALE[1]}: ...\""
        )
    return SCALE


_ANSWER = {
    "likert": ("score", 'an integer from 1 to 5, e.g. {"score": 3}'),
    "binary": ("verdict", 'either "good" or "bad", e.g. {"verdict": "good"}'),
    "pairwise": ("choice", '"first", "second" or "tie", e.g. {"choice": "first"}'),
    "question": ("answer", 'either "yes" or "no", e.g. {"answer": "yes"}'),
}

_INTRO = (
    "You are a careful evaluator of AI-generated images. Follow the rules below exactly. "
    "First explain your reasoning in a few sentences. Then, on the last line, write one JSON object and nothing after it."
)


def request_text(*, kind: str, prompt: str, question: str = "", rubric: str = "") -> str:
    """The text of one request; the image(s) go before it (two for pairwise: first, then second)."""
    key, example = _ANSWER[kind]
    parts = [_INTRO, f'The image was generated from the prompt: "{prompt}"']
    if kind == "question":
        parts.append(f"Answer this yes/no question about the image: {question}")
    else:
        parts.append(f"Rules:\n{rubric.strip()}")
        if kind == "likert":
            parts.append(f"{question}\nScore the image from 1 to 5 by the rules.")
        elif kind == "binary":
            parts.append(f"{question}\nSay whether the image is good (4 or 5 by the rules) or bad (1 to 3).")
        else:
            parts[1] = f'Both images were generated from the prompt: "{prompt}"'
            parts.append(f"You are shown two images, the first and then the second. {question}\n"
                         "Pick the better one by the rules, or say tie when neither is better.")
    parts.append(f'The JSON object has one key "{key}" whose value is {example}.')
    return "\n\n".join(parts)


def retry_text(kind: str) -> str:
    """The follow-up sent once when an answer does not end with the JSON object asked for."""
    key, example = _ANSWER[kind]
    return f'Your answer did not end with the JSON object asked for. Reply again, ending with one JSON object with key "{key}": {example}.'


@dataclass(frozen=True)
class Verdict:
    """A parsed answer: ``value`` is 1-5 (likert), 1/0 (binary good/bad, question yes/no) or
    "first"/"second"/"tie" (pairwise)."""

    value: int | str


def _json_objects(text: str):
    """JSON objects in ``text``, last first."""
    ends = [i for i, ch in enumerate(text) if ch == "}"]
    decoder = json.JSONDecoder()
    for end in reversed(ends):
        start = text.rfind("{", 0, end + 1)
        while start != -1:
            try:
                obj, stop = decoder.raw_decode(text, start)
            except ValueError:
                start = text.rfind("{", 0, start)
                continue
            if stop == end + 1 and isinstance(obj, dict):
                yield obj
            break


def parse_verdict(kind: str, text: str) -> Verdict | None:
    """The verdict in the last JSON object of ``text`` that has the expected key, or None
    when there is none or its value is out of range (never a guess)."""
    key, _ = _ANSWER[kind]
    for obj in _json_objects(text or ""):
        if key not in obj:
            continue
        value = obj[key]
        if kind == "likert":
            if isinstance(value, bool):
                return None
            if isinstance(value, str) and value.strip().isdigit():
                value = int(value.strip())
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            return Verdict(value) if isinstance(value, int) and SCALE[0] <= value <= SCALE[1] else None
        if not isinstance(value, str):
            return None
        value = value.strip().lower()
        if kind == "binary":
            return {"good": Verdict(1), "bad": Verdict(0)}.get(value)
        if kind == "question":
            return {"yes": Verdict(1), "no": Verdict(0)}.get(value)
        return Verdict(value) if value in ("first", "second", "tie") else None
    return None
