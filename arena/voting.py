"""Serving tasks to annotators and recording their votes.

The server alone decides what an annotator sees and which output goes left (a fair
coin per pairwise task). The client answers "left"/"right" for an assignment it was
served; the assignment maps that back to outputs. One vote per assignment is a
database constraint.
"""

from __future__ import annotations

import random
import secrets
import time
import uuid
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Q
from django.utils import timezone

from . import sampling
from .models import Annotator, Assignment, Criterion, GoldTask, Output, Prompt, Study, Vote, VoteKind

_coin = secrets.SystemRandom()

LIKERT_ANSWERS = {"1", "2", "3", "4", "5"}
BINARY_ANSWERS = {"good": 1, "bad": 0}
PAIRWISE_ANSWERS = {c.value for c in Vote.Choice}
SKIP = "skip"


class VoteError(Exception):
    """A vote that cannot be accepted. `status` is the HTTP status to answer with."""

    status = 400

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        if status is not None:
            self.status = status


# --------------------------------------------------------------------------- study index


@dataclass
class StudyIndex:
    """What a study can serve, built once and cached briefly per process."""

    output_generator: dict[int, int] = field(default_factory=dict)
    outputs: list[int] = field(default_factory=list)
    generators: list[int] = field(default_factory=list)
    # (generator_id, prompt_id) -> output ids
    by_gen_prompt: dict[tuple[int, int], list[int]] = field(default_factory=dict)
    # generator index pair (i < j) -> prompt ids both answered
    pair_prompts: dict[tuple[int, int], list[int]] = field(default_factory=dict)
    eligible: np.ndarray | None = None
    criteria: list = field(default_factory=list)
    built_at: float = 0.0


_INDEX: dict[tuple, StudyIndex] = {}
INDEX_TTL_SECONDS = 10.0


def study_outputs(study: Study):
    qs = Output.objects.filter(generator__in=study.generators.all())
    if study.categories:
        qs = qs.filter(prompt__category__in=study.categories)
    elif study.prompts.exists():
        qs = qs.filter(prompt__in=study.prompts.all())
    return qs


def study_index(study: Study) -> StudyIndex:
    key = (study.pk, study.created_at)
    idx = _INDEX.get(key)
    if idx is not None and time.monotonic() - idx.built_at < INDEX_TTL_SECONDS:
        return idx
    idx = StudyIndex(built_at=time.monotonic())
    idx.criteria = list(study.criteria.all())
    rows = list(study_outputs(study).values_list("id", "generator_id", "prompt_id"))
    for oid, gid, pid in rows:
        idx.output_generator[oid] = gid
        idx.by_gen_prompt.setdefault((gid, pid), []).append(oid)
    idx.outputs = list(idx.output_generator)
    idx.generators = sorted({gid for _, gid, _ in rows})
    prompts_of: dict[int, set[int]] = {}
    for gid, pid in idx.by_gen_prompt:
        prompts_of.setdefault(gid, set()).add(pid)
    n = len(idx.generators)
    idx.eligible = np.zeros((n, n), dtype=bool)
    for i in range(n):
        for j in range(i + 1, n):
            common = sorted(prompts_of[idx.generators[i]] & prompts_of[idx.generators[j]])
            if common:
                idx.pair_prompts[(i, j)] = common
                idx.eligible[i, j] = idx.eligible[j, i] = True
    _INDEX[key] = idx
    return idx


def study_index_clear() -> None:
    """Forget what this process cached about studies and annotators."""
    _INDEX.clear()
    _ANNOTATORS.clear()


# --------------------------------------------------------------------------- annotators


_ANNOTATORS: dict[int, tuple[float, Annotator]] = {}
ANNOTATOR_CACHE_SECONDS = 60.0


def annotator_for_user(user) -> Annotator:
    """The account's annotator (created on first use), remembered briefly per process."""
    hit = _ANNOTATORS.get(user.pk)
    now = time.monotonic()
    if hit is not None and now - hit[0] < ANNOTATOR_CACHE_SECONDS:
        return hit[1]
    annotator, _ = Annotator.objects.get_or_create(user=user)
    _ANNOTATORS[user.pk] = (now, annotator)
    return annotator


def annotator_for_crowd(*, study: Study, participant_id: str, study_id: str = "", session_id: str = "") -> Annotator:
    """A pseudonymous annotator bound to an external (Prolific) participant id."""
    participant_id = participant_id.strip()
    if not participant_id or len(participant_id) > 100 or not participant_id.isprintable():
        raise VoteError("PROLIFIC_PID must be a non-empty id of at most 100 characters")
    annotator, _ = Annotator.objects.get_or_create(
        study=study,
        external_id=participant_id,
        defaults={"external_study_id": study_id[:100], "external_session_id": session_id[:100]},
    )
    return annotator


def annotator_done_count(*, study: Study, annotator: Annotator) -> int:
    return Vote.objects.filter(study=study, annotator=annotator).count()


# --------------------------------------------------------------------------- serving


def _outstanding(study: Study, annotator: Annotator):
    return Assignment.objects.filter(
        study=study, annotator=annotator, answered_at__isnull=True, expires_at__gt=timezone.now()
    ).order_by("served_at")


_TASK_RELATED = ("criterion", "output_left__image", "output_left__prompt", "output_right__image")


@dataclass
class ServedTasks:
    current: Assignment | None
    ahead: list[Assignment]
    done: int


def tasks_serve(*, study: Study, annotator: Annotator, ahead: int = 1) -> ServedTasks:
    """The task to show now, up to `ahead` reserved tasks after it (to preload their images),
    and how many votes the annotator has given in this study.

    `current` is None when the annotator has reached the quota or nothing is left to serve.
    """
    done = annotator_done_count(study=study, annotator=annotator)
    remaining = study.quota_per_annotator - done
    if remaining <= 0 or not study.is_open:
        return ServedTasks(None, [], done)
    pending = list(_outstanding(study, annotator).select_related(*_TASK_RELATED)[: 1 + ahead])
    want = min(1 + ahead, remaining)
    created = []
    while len(pending) + len(created) < want:
        new = _assignment_create(study=study, annotator=annotator)
        if new is None:
            break
        created.append(new.pk)
    if created:
        fetched = {a.pk: a for a in Assignment.objects.filter(pk__in=created).select_related(*_TASK_RELATED)}
        pending += [fetched[pk] for pk in created]
    if not pending:
        return ServedTasks(None, [], done)
    return ServedTasks(pending[0], pending[1:], done)


def task_next(*, study: Study, annotator: Annotator, ahead: int = 1) -> tuple[Assignment | None, list[Assignment]]:
    served = tasks_serve(study=study, annotator=annotator, ahead=ahead)
    return served.current, served.ahead


def _assignment_create(*, study: Study, annotator: Annotator, attempts: int = 8) -> Assignment | None:
    kinds = [k for k in study.vote_kinds if k in VoteKind.values]
    criteria = study_index(study).criteria
    if not kinds or not criteria:
        return None
    rng = random.Random(secrets.randbits(64))
    for _ in range(attempts):
        if study.gold_rate > 0 and rng.random() < study.gold_rate:
            a = _gold_assignment(study=study, annotator=annotator, rng=rng)
            if a is not None:
                return a
        kind = rng.choice(kinds)
        criterion = rng.choice(criteria)
        if kind == VoteKind.PAIRWISE:
            choice = _pick_pairwise(study=study, annotator=annotator, criterion=criterion, rng=rng)
        else:
            choice = _pick_single(study=study, annotator=annotator, criterion=criterion, kind=kind, rng=rng)
        if choice is None:
            # Nothing of this kind/criterion left for this annotator; try another draw,
            # then every combination before giving up.
            continue
        a = _save_assignment(study=study, annotator=annotator, criterion=criterion, kind=kind, **choice)
        if a is not None:
            return a
    for kind in kinds:
        for criterion in criteria:
            if kind == VoteKind.PAIRWISE:
                choice = _pick_pairwise(study=study, annotator=annotator, criterion=criterion, rng=rng, tries=50)
            else:
                choice = _pick_single(study=study, annotator=annotator, criterion=criterion, kind=kind, rng=rng)
            if choice is not None:
                a = _save_assignment(study=study, annotator=annotator, criterion=criterion, kind=kind, **choice)
                if a is not None:
                    return a
    return None


def _save_assignment(*, study, annotator, criterion, kind, left: int, right: int | None, item_key: str, gold=None) -> Assignment | None:
    now = timezone.now()
    # Outside a transaction a failed insert breaks nothing, so no savepoint round trips are needed.
    guard = transaction.atomic() if connection.in_atomic_block else nullcontext()
    try:
        with guard:
            return Assignment.objects.create(
                study=study,
                criterion=criterion,
                annotator=annotator,
                kind=kind,
                output_left_id=left,
                output_right_id=right,
                item_key=item_key,
                gold=gold,
                served_at=now,
                expires_at=now + timedelta(seconds=settings.ARENA_ASSIGNMENT_TTL_SECONDS),
            )
    except IntegrityError:
        return None  # the same item was just reserved for this annotator (a second tab)


def _active_counts(study: Study, keys: list[str]) -> dict[str, int]:
    """Distinct annotators holding or having answered each item (expired and skipped ones don't count)."""
    now = timezone.now()
    rows = (
        Assignment.objects.filter(study=study, item_key__in=keys, skipped=False)
        .filter(Q(answered_at__isnull=False) | Q(expires_at__gt=now))
        .values("item_key")
        .annotate(n=Count("annotator", distinct=True))
    )
    return {r["item_key"]: r["n"] for r in rows}


def _fewest_first(study: Study, annotator: Annotator, keys: list[str], rng: random.Random) -> str | None:
    if not keys:
        return None
    seen = set(Assignment.objects.filter(annotator=annotator, item_key__in=keys).values_list("item_key", flat=True))
    fresh = [k for k in keys if k not in seen]
    if not fresh:
        return None
    counts = _active_counts(study, fresh)
    low = min(counts.get(k, 0) for k in fresh)
    return rng.choice([k for k in fresh if counts.get(k, 0) == low])


def _pick_single(*, study, annotator, criterion, kind, rng, sample: int = 40) -> dict | None:
    outputs = study_index(study).outputs
    if not outputs:
        return None
    candidates = rng.sample(outputs, min(sample, len(outputs)))
    keys = {f"{kind}:{criterion.pk}:{oid}": oid for oid in candidates}
    key = _fewest_first(study, annotator, list(keys), rng)
    if key is None and len(outputs) > sample:
        keys = {f"{kind}:{criterion.pk}:{oid}": oid for oid in outputs}
        key = _fewest_first(study, annotator, list(keys), rng)
    if key is None:
        return None
    return {"left": keys[key], "right": None, "item_key": key}


def sampler_state(study: Study, criterion: Criterion, idx: StudyIndex) -> sampling.SamplerState:
    """The sampler's view of the study: pair vote counts and the latest stored fit."""
    from ratings.selectors import sampler_inputs_get

    return sampler_inputs_get(study=study, criterion=criterion, generators=idx.generators)


def _pick_pairwise(*, study, annotator, criterion, rng, tries: int = 6) -> dict | None:
    idx = study_index(study)
    if idx.eligible is None or not idx.eligible.any():
        return None
    eligible = idx.eligible.copy()
    state = sampler_state(study, criterion, idx)
    np_rng = np.random.default_rng(rng.getrandbits(64))
    for _ in range(tries):
        try:
            i, j = sampling.pick_pair(study.sampler, state, np_rng, eligible=eligible)
        except sampling.NoPairAvailable:
            return None
        i, j = min(i, j), max(i, j)
        ga, gb = idx.generators[i], idx.generators[j]
        keys: dict[str, tuple[int, int]] = {}
        prompts = idx.pair_prompts[(i, j)]
        for pid in rng.sample(prompts, min(20, len(prompts))):
            oa = rng.choice(idx.by_gen_prompt[(ga, pid)])
            ob = rng.choice(idx.by_gen_prompt[(gb, pid)])
            lo, hi = min(oa, ob), max(oa, ob)
            keys[f"pairwise:{criterion.pk}:{lo}:{hi}"] = (lo, hi)
        key = _fewest_first(study, annotator, list(keys), rng)
        if key is None:
            eligible[i, j] = eligible[j, i] = False
            continue
        a, b = keys[key]
        if _coin.random() < 0.5:  # fair coin: which output is shown on the left
            a, b = b, a
        return {"left": a, "right": b, "item_key": key}
    return None


def _gold_assignment(*, study, annotator, rng) -> Assignment | None:
    kinds = set(study.vote_kinds)
    golds = list(GoldTask.objects.filter(study=study, kind__in=kinds).values_list("id", flat=True))
    if not golds:
        return None
    keys = {f"gold:{gid}": gid for gid in golds}
    seen = set(Assignment.objects.filter(annotator=annotator, item_key__in=list(keys)).values_list("item_key", flat=True))
    fresh = [k for k in keys if k not in seen]
    if not fresh:
        return None
    gold = GoldTask.objects.get(pk=keys[rng.choice(fresh)])
    left, right = gold.output_id, gold.other_output_id
    if gold.kind == VoteKind.PAIRWISE and _coin.random() < 0.5:
        left, right = right, left
    return _save_assignment(
        study=study, annotator=annotator, criterion=gold.criterion, kind=gold.kind,
        left=left, right=right, item_key=f"gold:{gold.pk}", gold=gold,
    )


# --------------------------------------------------------------------------- voting


@dataclass
class VoteResult:
    vote: Vote | None
    created: bool
    skipped: bool = False


def _parse_answer(kind: str, answer: str) -> tuple[int | None, str]:
    answer = (answer or "").strip().lower()
    if kind == VoteKind.LIKERT and answer in LIKERT_ANSWERS:
        return int(answer), ""
    if kind == VoteKind.BINARY and answer in BINARY_ANSWERS:
        return BINARY_ANSWERS[answer], ""
    if kind == VoteKind.PAIRWISE and answer in PAIRWISE_ANSWERS:
        return None, answer
    allowed = {
        VoteKind.LIKERT: "1, 2, 3, 4 or 5",
        VoteKind.BINARY: "good or bad",
        VoteKind.PAIRWISE: "left, right, tie or bothbad",
    }[kind]
    raise VoteError(f"answer {answer!r} is not valid for a {kind} task; use {allowed} (or skip)")


def _gold_correct(gold: GoldTask, a: Assignment, score: int | None, choice: str) -> bool:
    exp = gold.expected_answer.strip().lower()
    if gold.kind == VoteKind.LIKERT:
        return score is not None and exp.isdigit() and abs(score - int(exp)) <= 1
    if gold.kind == VoteKind.BINARY:
        return score == BINARY_ANSWERS.get(exp)
    if exp == "tie":
        return choice == "tie"
    better = gold.output_id if exp == "output" else gold.other_output_id
    chosen = {"left": a.output_left_id, "right": a.output_right_id}.get(choice)
    return chosen == better


def _assignment_uuid(value) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise VoteError("no such task was served to you", status=404) from None


def vote_record(*, assignment_id, annotator: Annotator, answer: str) -> VoteResult:
    """Record the answer to one served assignment, exactly once.

    Resubmitting the same answer (double click, network retry) stores nothing and
    succeeds; a different answer to an answered assignment is refused (409).
    """
    assignment_id = _assignment_uuid(assignment_id)
    with transaction.atomic():
        try:
            a = (
                Assignment.objects.select_for_update(of=("self",))
                .select_related("output_left__prompt", "output_right", "gold", "study")
                .get(pk=assignment_id, annotator=annotator)
            )
        except Assignment.DoesNotExist:
            raise VoteError("no such task was served to you", status=404) from None
        answer = (answer or "").strip().lower()
        if a.answered_at is not None:
            existing = Vote.objects.filter(assignment=a).first()
            if answer == SKIP and a.skipped:
                return VoteResult(vote=None, created=False, skipped=True)
            if existing is not None and answer != SKIP:
                score, choice = _parse_answer(a.kind, answer)
                if existing.score == score and existing.choice == choice:
                    return VoteResult(vote=existing, created=False)
            raise VoteError("this task was already answered", status=409)
        now = timezone.now()
        if a.expires_at <= now:
            raise VoteError("this task has expired; please take the next one", status=410)
        if not a.study.is_open:
            raise VoteError("this study is closed", status=403)
        if answer == SKIP:
            a.answered_at = now
            a.skipped = True
            a.save(update_fields=["answered_at", "skipped"])
            return VoteResult(vote=None, created=False, skipped=True)
        score, choice = _parse_answer(a.kind, answer)
        a.answered_at = now
        a.save(update_fields=["answered_at"])
        gen_left = a.output_left.generator_id
        gen_right = a.output_right.generator_id if a.output_right_id else None
        vote = Vote.objects.create(
            assignment=a,
            study_id=a.study_id,
            criterion_id=a.criterion_id,
            annotator=annotator,
            kind=a.kind,
            output_left_id=a.output_left_id,
            output_right_id=a.output_right_id,
            generator_left_id=gen_left,
            generator_right_id=gen_right,
            prompt_category=a.output_left.prompt.category,
            score=score,
            choice=choice,
            response_ms=max(0, int((now - a.served_at).total_seconds() * 1000)),
            is_gold=a.gold_id is not None,
            gold_correct=_gold_correct(a.gold, a, score, choice) if a.gold_id else None,
        )
        if not vote.is_gold:
            study_id, criterion_id = a.study_id, a.criterion_id
            transaction.on_commit(lambda: _vote_committed(study_id=study_id, criterion_id=criterion_id))
    return VoteResult(vote=vote, created=True)


def _vote_committed(*, study_id: int, criterion_id: int) -> None:
    """After the commit: the vote is stored, so nothing here may turn its answer into an error.
    What this fails to queue, the next vote, page view or periodic sweep queues."""
    import logging

    from ratings.services import ratings_vote_committed

    try:
        ratings_vote_committed(study_id=study_id, criterion_id=criterion_id)
    except Exception:
        logging.getLogger(__name__).exception("after-vote hook failed for study %s", study_id)


def flag_record(*, annotator: Annotator, assignment_id, side: str, reason: str, note: str = ""):
    from .models import Flag

    if reason not in Flag.Reason.values:
        raise VoteError(f"reason must be one of {', '.join(Flag.Reason.values)}")
    try:
        a = Assignment.objects.get(pk=_assignment_uuid(assignment_id), annotator=annotator)
    except Assignment.DoesNotExist:
        raise VoteError("no such task was served to you", status=404) from None
    output_id = a.output_right_id if side == "right" else a.output_left_id
    if output_id is None:
        raise VoteError("this task has no right image", status=400)
    flag, _ = Flag.objects.get_or_create(
        output_id=output_id, annotator=annotator, reason=reason, defaults={"assignment": a, "note": note[:500]}
    )
    return flag


def prompt_of(assignment: Assignment) -> Prompt:
    return assignment.output_left.prompt
