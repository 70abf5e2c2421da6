"""Setting up a study and reading its progress: what a study can serve, saves, and overview figures.

Counts come from SQL aggregates over outputs and votes; nothing here walks votes in Python.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import transaction
from django.db.models import Count, Max, Min, Q
from django.db.models.functions import TruncDay, TruncHour
from django.utils import timezone

from .models import (
    Annotator, Criterion, Flag, Generator, GoldTask, Output, Prompt, Study, Vote, VoteKind, WithdrawnOutput,
)
from .selectors import counted_votes, study_outputs
from .voting import study_index, study_index_clear

# --------------------------------------------------------------------------- what a study can serve


@dataclass
class StudyCapacity:
    """How many items a study has per vote kind and criterion, and how many tasks one annotator can get.

    An item is one output (rating, good/bad) or one pair of outputs of two generators for the
    same prompt (pairwise), per criterion; an annotator gets each item at most once.
    """

    outputs: int = 0
    generators: int = 0
    prompts: int = 0
    pairs: int = 0
    with_questions: int = 0  # outputs whose prompt has yes/no questions
    kinds: list[str] = field(default_factory=list)
    criteria: list[str] = field(default_factory=list)
    per_kind: dict[str, int] = field(default_factory=dict)  # items per criterion of each kind
    gold: int = 0
    quota: int = 0
    overlap: int = 0
    calibration_items: int = 0
    calibration_annotators: int = 0
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def rows(self) -> list[tuple[str, str, int]]:
        """(kind label, criterion, items) for every kind and criterion of the study."""
        labels = dict(VoteKind.choices)
        # Question checks ask the prompt's questions once per output, whatever the criteria.
        return [(labels[k], c, self.per_kind[k]) for k in self.kinds
                for c in (self.criteria[:1] and ["all criteria"] if k == VoteKind.QUESTIONS else self.criteria)]

    @property
    def items_total(self) -> int:
        return sum(n for _, _, n in self.rows)

    @property
    def tasks_per_annotator(self) -> int:
        return self.items_total + self.gold

    @property
    def annotator_slots(self) -> int:
        """Annotators who can reach the quota when every item goes to `overlap` annotators."""
        if not self.quota:
            return 0
        return self.items_total * self.overlap // self.quota


def _outputs_query(*, generator_ids, categories, withdrawn=(), prompt_ids=()):
    qs = Output.objects.filter(generator_id__in=list(generator_ids))
    if categories:
        qs = qs.filter(prompt__category__in=list(categories))
    elif prompt_ids:  # a study limited to listed prompts (as the serving code reads it)
        qs = qs.filter(prompt_id__in=list(prompt_ids))
    if withdrawn:
        qs = qs.exclude(pk__in=list(withdrawn))
    return qs


def study_capacity_get(
    *, generator_ids, categories, kinds, criteria: list[str], quota: int, overlap: int,
    calibration_items: int = 0, calibration_annotators: int = 0, gold: int = 0, withdrawn=(), prompt_ids=(),
) -> StudyCapacity:
    """Count what a study set up this way can serve, and say what it cannot satisfy (in `errors`)."""
    qs = _outputs_query(generator_ids=generator_ids, categories=categories, withdrawn=withdrawn, prompt_ids=prompt_ids)
    cap = StudyCapacity(kinds=[k for k in VoteKind.values if k in kinds], criteria=list(criteria), gold=gold,
                        quota=quota or 0, overlap=overlap or 0, calibration_items=calibration_items or 0,
                        calibration_annotators=calibration_annotators or 0)
    cap.outputs = qs.count()
    per_prompt: dict[int, list[int]] = {}
    for pid, n in qs.values_list("prompt_id", "generator_id").annotate(n=Count("id")).values_list("prompt_id", "n").order_by():
        per_prompt.setdefault(pid, []).append(n)
    cap.prompts = len(per_prompt)
    cap.generators = qs.values("generator_id").distinct().count()
    # Pairs of outputs of two different generators for one prompt: ((sum n)^2 - sum n^2) / 2.
    cap.pairs = sum((sum(ns) ** 2 - sum(n * n for n in ns)) // 2 for ns in per_prompt.values())
    cap.with_questions = qs.exclude(prompt__questions=[]).count() if VoteKind.QUESTIONS in cap.kinds else 0
    cap.per_kind = {VoteKind.LIKERT: cap.outputs, VoteKind.BINARY: cap.outputs, VoteKind.PAIRWISE: cap.pairs,
                    VoteKind.QUESTIONS: cap.with_questions}

    if not cap.kinds:
        cap.errors["vote_kinds"] = "Pick at least one vote kind."
    if not cap.criteria:
        cap.errors["criteria"] = "Pick or add at least one criterion."
    if not cap.outputs:
        cap.errors["generators"] = "The generators and categories picked have no outputs."
    elif VoteKind.PAIRWISE in cap.kinds and not cap.pairs:
        cap.errors["vote_kinds"] = (
            "Pairwise needs two generators answering the same prompt; the generators and categories picked have none."
        )
    elif VoteKind.QUESTIONS in cap.kinds and not cap.with_questions:
        cap.errors["vote_kinds"] = (
            "Question checks need prompts with yes/no questions (manifest column 'questions'); "
            "the generators and categories picked have none."
        )
    if cap.kinds and cap.criteria and cap.outputs and cap.quota > cap.tasks_per_annotator:
        parts = ", ".join(f"{n} {label.lower()} for {c}" for label, c, n in cap.rows)
        cap.errors["quota_per_annotator"] = (
            f"A quota of {cap.quota} tasks is more than the {cap.tasks_per_annotator} one annotator can get "
            f"({parts}{f', {cap.gold} gold' if cap.gold else ''}): nobody could complete the study. "
            f"Lower the quota or add outputs, kinds or criteria."
        )
    if cap.overlap < 1:
        cap.errors["overlap_target"] = "The overlap target must be at least 1 annotator per item."
    elif cap.calibration_items and cap.calibration_annotators > cap.overlap:
        cap.errors["calibration_annotators"] = (
            f"{cap.calibration_annotators} annotators per calibration item is more than the overlap target of "
            f"{cap.overlap}: an item goes to at most {cap.overlap} annotators."
        )
    if cap.calibration_items and cap.kinds and cap.outputs:
        short = [(dict(VoteKind.choices)[k], cap.per_kind[k]) for k in cap.kinds
                 if k != VoteKind.QUESTIONS and cap.per_kind[k] < cap.calibration_items]
        if short:
            label, n = short[0]
            cap.errors["calibration_items"] = (
                f"A calibration set of {cap.calibration_items} items per kind and criterion needs more than the "
                f"{n} {label.lower()} items the outputs give."
            )
    return cap


def study_capacity_of(study: Study) -> StudyCapacity:
    """What a saved study can serve (its generators, categories or listed prompts, less withdrawn outputs)."""
    withdrawn = set(WithdrawnOutput.objects.filter(study=study).values_list("output_id", flat=True))
    return study_capacity_get(
        generator_ids=list(study.generators.values_list("id", flat=True)), categories=study.categories,
        prompt_ids=list(study.prompts.values_list("id", flat=True)),
        kinds=study.vote_kinds, criteria=[c.name for c in study.criteria.all()], quota=study.quota_per_annotator,
        overlap=study.overlap_target, calibration_items=study.calibration_items,
        calibration_annotators=study.calibration_annotators,
        gold=GoldTask.objects.filter(study=study, kind__in=study.vote_kinds).count(), withdrawn=withdrawn,
    )


def generator_choices_get() -> list[tuple[int, str]]:
    """Generators with their output counts, for the setup form."""
    rows = Generator.objects.annotate(n=Count("outputs")).order_by("name").values_list("id", "name", "n")
    return [(gid, f"{name} ({n} output{'s' if n != 1 else ''})") for gid, name, n in rows]


def category_choices_get() -> list[tuple[str, str]]:
    """Prompt categories with their output counts (prompts without one appear as "(none)")."""
    rows = Output.objects.values_list("prompt__category").annotate(n=Count("id")).order_by("prompt__category")
    return [(cat, f"{cat or '(none)'} ({n} output{'s' if n != 1 else ''})") for cat, n in rows]


# --------------------------------------------------------------------------- saving


def criterion_create(*, name: str, likert_question: str = "", binary_question: str = "", pairwise_question: str = "") -> Criterion:
    from django.utils.text import slugify

    base = slugify(name)[:50] or "criterion"
    slug, n = base, 1
    while Criterion.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return Criterion.objects.create(slug=slug, name=name, likert_question=likert_question,
                                    binary_question=binary_question, pairwise_question=pairwise_question)


@transaction.atomic
def study_save(*, form, new_criterion: dict | None = None) -> Study:
    """Save a validated setup form; a criterion typed in the form is created and added."""
    study = form.save()
    if new_criterion and new_criterion.get("name"):
        study.criteria.add(criterion_create(**new_criterion))
    transaction.on_commit(study_index_clear)
    return study


def gold_task_create(*, study: Study, criterion: Criterion, kind: str, output: Output, other_output: Output | None,
                     expected_answer: str, by=None) -> GoldTask:
    return GoldTask.objects.create(study=study, criterion=criterion, kind=kind, output=output, other_output=other_output,
                                   expected_answer=expected_answer, created_by=by)


def study_output_thumbnails(study: Study, *, limit: int = 60) -> list[Output]:
    """Outputs of the study to pick gold tasks from, with prompt and generator (staff see originals)."""
    return list(study_outputs(study).select_related("image", "prompt", "generator").order_by("prompt_id", "generator__name")[:limit])


# --------------------------------------------------------------------------- try as annotator


def study_preview_task(study: Study, *, seed: int) -> dict | None:
    """One task drawn as an annotator would meet it, written nowhere (no assignment, no vote)."""
    idx = study_index(study)
    kinds = [k for k in study.vote_kinds if k in VoteKind.values]
    if not kinds or not idx.criteria or not idx.outputs:
        return None
    rng = random.Random(seed)
    kind = rng.choice(kinds)
    criterion = rng.choice(idx.criteria)
    if kind == VoteKind.PAIRWISE and idx.pair_prompts:
        i, j = rng.choice(sorted(idx.pair_prompts))
        pid = rng.choice(idx.pair_prompts[(i, j)])
        oids = [rng.choice(idx.by_gen_prompt[(idx.generators[i], pid)]), rng.choice(idx.by_gen_prompt[(idx.generators[j], pid)])]
        rng.shuffle(oids)
        sides = ("left", "right")
    else:
        if kind == VoteKind.PAIRWISE or (kind == VoteKind.QUESTIONS and not idx.question_outputs):
            kind = next((k for k in kinds if k not in (VoteKind.PAIRWISE, VoteKind.QUESTIONS)), None)
            if kind is None:
                return None
        oids = [rng.choice(sorted(idx.question_outputs if kind == VoteKind.QUESTIONS else idx.outputs))]
        sides = ("single",)
    prompt, questions = Prompt.objects.filter(outputs__id=oids[0]).values_list("text", "questions").first()
    images = [{"side": s, "url": idx.display[o][0], "width": idx.display[o][1], "height": idx.display[o][2]}
              for s, o in zip(sides, oids)]
    return {"kind": kind, "criterion": criterion, "question": criterion.question(kind), "prompt": prompt, "images": images,
            "questions": questions if kind == VoteKind.QUESTIONS else []}


# --------------------------------------------------------------------------- overview


ACTIVE_WINDOW = timedelta(minutes=30)


def study_overview_get(*, study: Study) -> dict:
    """Progress figures for the overview page, each one SQL aggregate."""
    votes = counted_votes(Vote.objects.filter(study=study), study=study)
    now = timezone.now()
    counted = votes.filter(annotator__excluded=False)
    per = list(counted.values_list("kind", "criterion__name").annotate(n=Count("id")).order_by("criterion__name", "kind"))
    span = counted.aggregate(first=Min("created_at"), last=Max("created_at"))
    trunc = TruncHour if span["first"] and span["last"] and span["last"] - span["first"] <= timedelta(days=3) else TruncDay
    series_rows = (
        counted.annotate(t=trunc("created_at")).values_list("kind", "criterion__name", "t").annotate(n=Count("id")).order_by("t")
    )
    series: dict[str, list[tuple]] = {}
    labels = dict(VoteKind.choices)
    for kind, crit, t, n in series_rows:
        series.setdefault(f"{labels.get(kind, kind)} · {crit}", []).append((t, n))
    # Completion as the voting page counts it: votes cast (gold included) against the quota.
    completed = (
        Vote.objects.filter(study=study).values("annotator_id").annotate(n=Count("id"))
        .filter(n__gte=study.quota_per_annotator).count()
    )
    # Coverage: items that reached the overlap target, over the items the study has.
    per_item = votes.filter(is_gold=False).values("assignment__item_key").annotate(n=Count("annotator_id", distinct=True))
    covered = per_item.filter(n__gte=study.overlap_target).count()
    started = per_item.count()
    cap = study_capacity_of(study)
    flags = Flag.objects.filter(assignment__study=study)
    return {
        "votes_total": counted.count(),
        "votes_excluded": votes.filter(annotator__excluded=True).count(),
        "per_kind_criterion": [(labels.get(k, k), c, n) for k, c, n in per],
        "series": series,
        "series_unit": "hour" if trunc is TruncHour else "day",
        "annotators": votes.values("annotator_id").distinct().count(),
        "annotators_active": votes.filter(created_at__gte=now - ACTIVE_WINDOW).values("annotator_id").distinct().count(),
        "annotators_excluded": Annotator.objects.filter(votes__study=study, excluded=True).distinct().count(),
        "completed": completed,
        "items_total": cap.items_total,
        "items_started": started,
        "items_covered": covered,
        "coverage": covered / cap.items_total if cap.items_total else None,
        "flags_open": flags.filter(resolved=False).count(),
        "flags_total": flags.count(),
        "withdrawn": WithdrawnOutput.objects.filter(study=study).count(),
        "capacity": cap,
    }


def studies_progress_get(studies) -> list[dict]:
    """Votes, annotators and completed annotators of each study, three grouped queries in all."""
    ids = [s.pk for s in studies]
    votes = dict(
        Vote.objects.filter(study_id__in=ids).values_list("study_id").annotate(n=Count("id")).order_by()
    )
    people = dict(
        Vote.objects.filter(study_id__in=ids).values_list("study_id").annotate(n=Count("annotator_id", distinct=True)).order_by()
    )
    done_rows = Vote.objects.filter(study_id__in=ids).values_list("study_id", "annotator_id").annotate(n=Count("id")).order_by()
    quota = {s.pk: s.quota_per_annotator for s in studies}
    completed: dict[int, int] = {}
    for sid, _aid, n in done_rows:
        if n >= quota[sid]:
            completed[sid] = completed.get(sid, 0) + 1
    return [
        {"study": s, "votes": votes.get(s.pk, 0), "annotators": people.get(s.pk, 0), "completed": completed.get(s.pk, 0)}
        for s in studies
    ]


def flags_for_review(*, study: Study | None = None):
    """Flags with their output's image and prompt, open ones first."""
    qs = Flag.objects.select_related("output__image", "output__prompt", "output__generator", "annotator", "assignment__study")
    if study is not None:
        qs = qs.filter(Q(assignment__study=study))
    return qs.order_by("resolved", "-created_at")
