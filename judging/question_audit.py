"""Question checks: automated yes/no answers audited against people's (pure: no Django, no I/O).

An item is one yes/no question of a prompt asked about one output (TIFA, Hu et al. 2023; DSG,
Cho et al. 2024). People's answer to an item is the majority of their answers; an item whose
yes and no answers are equal in number has no people's answer and is left out (counted as
``tied``). Each source (VQAScore, an MLLM judge) gives its own yes/no per item; on the items
both have:

- accuracy: share of items where the source gives people's answer (Wilson 95 % interval);
- hallucinated: the source says yes, people say no; hallucination rate = hallucinated / items
  people answered no;
- missed: the source says no, people say yes; missed rate = missed / items people answered yes.

Figures are given overall, per generator and per prompt category, each with its n.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ratings.stats import wilson_interval

FEW_ITEMS = 10
"""Below this many items a figure is shown but marked as resting on few items."""


@dataclass(frozen=True)
class Item:
    """One question about one output, with people's yes and no answers to it."""

    output_id: int
    question_index: int
    generator: str
    category: str
    yes: int
    no: int

    @property
    def key(self) -> tuple[int, int]:
        return (self.output_id, self.question_index)


def majority(yes: int, no: int) -> bool | None:
    """People's answer: True (yes) or False (no) by majority; None on a tie (or no answers)."""
    if yes == no:
        return None
    return yes > no


@dataclass
class _Tally:
    n: int = 0
    correct: int = 0
    people_yes: int = 0
    people_no: int = 0
    hallucinated: int = 0
    missed: int = 0

    def add(self, people: bool, model: bool) -> None:
        self.n += 1
        self.correct += people == model
        if people:
            self.people_yes += 1
            self.missed += not model
        else:
            self.people_no += 1
            self.hallucinated += model

    def figures(self, level: float) -> dict:
        def rate(k: int, n: int) -> dict:
            low, high = wilson_interval(k, n, level) if n else (math.nan, math.nan)
            return {"rate": k / n if n else None, "low": None if math.isnan(low) else low,
                    "high": None if math.isnan(high) else high, "n": n}

        acc = rate(self.correct, self.n)
        return {
            "n": self.n, "correct": self.correct, "accuracy": acc["rate"], "low": acc["low"], "high": acc["high"],
            "people_yes": self.people_yes, "people_no": self.people_no,
            "hallucinated": self.hallucinated, "hallucination_rate": rate(self.hallucinated, self.people_no),
            "missed": self.missed, "missed_rate": rate(self.missed, self.people_yes),
            "few": self.n < FEW_ITEMS,
        }


def question_audit(
    items: Sequence[Item], sources: Sequence[tuple[str, Mapping[tuple[int, int], bool]]], *, level: float = 0.95
) -> dict:
    """Audit each source's yes/no answers against people's majority.

    ``sources``: (name, {(output id, question index): says yes}) in the order to report them.
    Returns ``{"items", "tied", "answers", "sources": [{"name", "overall", "generators",
    "categories"}]}``, where every figure block is ``_Tally.figures`` (generators and categories
    sorted by name, each block with a ``name``).
    """
    decided = [(it, majority(it.yes, it.no)) for it in items]
    tied = sum(1 for _, m in decided if m is None)
    decided = [(it, m) for it, m in decided if m is not None]
    out = []
    for name, answers in sources:
        overall = _Tally()
        by_gen: dict[str, _Tally] = {}
        by_cat: dict[str, _Tally] = {}
        for it, people in decided:
            model = answers.get(it.key)
            if model is None:
                continue
            model = bool(model)
            overall.add(people, model)
            by_gen.setdefault(it.generator, _Tally()).add(people, model)
            by_cat.setdefault(it.category, _Tally()).add(people, model)
        out.append({
            "name": name,
            "overall": overall.figures(level),
            "generators": [{"name": g, **t.figures(level)} for g, t in sorted(by_gen.items())],
            "categories": [{"name": c, **t.figures(level)} for c, t in sorted(by_cat.items())],
        })
    return {
        "items": len(decided),
        "tied": tied,
        "answers": sum(it.yes + it.no for it in items),
        "sources": out,
    }
