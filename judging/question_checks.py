"""The board's question checks: people's answers to the prompts' yes/no questions, VQAScore's
and the MLLM judges' answers to the same questions, audited by `question_audit`.

Read by the full ratings recompute, which stores the result with the study's boards.
"""

from __future__ import annotations

from django.db.models import Count

from arena.models import Output, QuestionAnswer, Study, Vote, VoteKind
from arena.selectors import counted_votes

from . import selectors
from .models import OutputScore
from .question_audit import Item, question_audit
from .scorers.vqa import VQAScorer, says_yes

VQA_SOURCE = "VQAScore"


def question_items_get(*, study: Study) -> tuple[list[Item], dict[int, list[str]]]:
    """People's answers per (output, question), from the study's counted question checks (no
    gold, no excluded annotator, no withdrawn output), aggregated in SQL; and each output's
    questions. An answer given to a question whose text has changed since is left out."""
    votes = counted_votes(
        Vote.objects.filter(study=study, kind=VoteKind.QUESTIONS, is_gold=False, annotator__excluded=False), study=study
    )
    rows = list(
        QuestionAnswer.objects.filter(vote__in=votes)
        .values_list("vote__output_left_id", "question_index", "question", "answer")
        .annotate(n=Count("id"))
        .order_by()
    )
    meta = {
        oid: (gen, cat or "", list(qs or []))
        for oid, gen, cat, qs in Output.objects.filter(pk__in={r[0] for r in rows})
        .values_list("id", "generator__name", "prompt__category", "prompt__questions")
    }
    counts: dict[tuple[int, int], list[int]] = {}
    for oid, index, question, answer, n in rows:
        asked = meta[oid][2]
        if index >= len(asked) or asked[index] != question:
            continue
        counts.setdefault((oid, index), [0, 0])[0 if answer else 1] += n
    items = [Item(oid, index, meta[oid][0], meta[oid][1], yes, no) for (oid, index), (yes, no) in sorted(counts.items())]
    return items, {oid: m[2] for oid, m in meta.items()}


def vqa_question_answers(*, questions: dict[int, list[str]]) -> dict[tuple[int, int], bool]:
    """VQAScore's yes/no per (output, question): P(yes) of its latest score of the output, for
    the question asked with the same text (``says_yes``)."""
    out: dict[tuple[int, int], bool] = {}
    latest: dict[int, dict] = {}
    for oid, details in (
        OutputScore.objects.filter(scorer=VQAScorer.name, output_id__in=list(questions), value__isnull=False)
        .order_by("created_at", "pk").values_list("output_id", "details")
    ):
        latest[oid] = details or {}
    for oid, details in latest.items():
        asked = questions[oid]
        for index, entry in enumerate(details.get("questions") or []):
            if index < len(asked) and entry.get("question") == asked[index] and entry.get("p_yes") is not None:
                out[(oid, index)] = says_yes(entry["p_yes"])
    return out


def judge_answers_get(*, study: Study) -> dict[str, dict[tuple[int, int], bool]]:
    """Each MLLM judge's yes/no per (output, question), where the judges provide them."""
    read = getattr(selectors, "judge_question_answers", None)
    if read is None:
        return {}
    out: dict[str, dict[tuple[int, int], bool]] = {}
    for judge, oid, index, yes in read(study=study):
        out.setdefault(judge, {})[(oid, index)] = bool(yes)
    return out


def question_checks_compute(*, study: Study) -> dict | None:
    """The audit for the board, or None when the study asks no question checks and has none."""
    items, questions = question_items_get(study=study)
    if not items and VoteKind.QUESTIONS not in (study.vote_kinds or []):
        return None
    sources = [(VQA_SOURCE, vqa_question_answers(questions=questions))]
    sources += sorted(judge_answers_get(study=study).items())
    return question_audit(items, sources)
