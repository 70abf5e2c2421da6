"""MLLM judges as pseudo-annotators: rubrics, planning a study's tasks, running a judge on them.

A judge answers the study's own tasks: for each criterion and enabled vote kind, a rating 1-5 or
good/bad of every output annotators can be shown, and every pair of outputs of one prompt by two
generators, judged in both orders. Outputs whose prompt has yes/no questions also get each
question asked. The judge sees the display renditions annotators see, never a generator's name.

A run is a scoring job (kind "judge") with a ``JudgeRun`` beside it: claimed, kept alive, taken
over and re-run like every job. Verdicts are written batch by batch in one transaction each, and
a task is never judged twice by the same configuration (a database constraint): a failed or
stopped run is resumed by running it again.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import F

from arena.models import Criterion, Output, Study, Vote, VoteKind
from arena.renditions import renditions_make_for_study
from arena.storage import rendition_path
from arena.voting import study_index, study_index_clear

from .judge_backends import JudgeBackendError, JudgeReply, JudgeRequest, backend_for
from .judge_conf import judge_get, judges_configured
from .judge_report import judge_reports_refresh
from .judge_prompts import RubricError, default_rubric, parse_verdict, request_text, retry_text, rubric_scale
from .models import JudgeRubric, JudgeRun, JudgeVote, ScoreJob
from .services import JobFailed, _agreement_refresh, _job_done, _job_progress, job_dispatch

logger = logging.getLogger(__name__)

__all__ = [
    "JudgeRunRefused",
    "judge_run_enqueue",
    "judge_run_work",
    "judge_runs_recent",
    "judge_tasks_plan",
    "rubrics_get",
    "rubrics_save",
]


class JudgeRunRefused(Exception):
    """A run that cannot start (no such judge, a rubric without a score range): nothing queued."""


# --------------------------------------------------------------------------- rubrics


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def rubrics_get(*, study: Study) -> list[dict]:
    """Per criterion of the study: its rubric text and whether it is the default."""
    stored = dict(JudgeRubric.objects.filter(study=study).values_list("criterion_id", "text"))
    out = []
    for c in study.criteria.all():
        default = default_rubric(c.slug, c.name, c.description)
        text = stored.get(c.pk, default)
        out.append({"criterion": c, "text": text, "default": default, "is_default": text == default})
    return out


def rubrics_save(*, study: Study, texts: dict[int, str]) -> dict[int, str]:
    """Store the rubrics typed in the study setup (criterion id -> text). Every one is checked
    first; returns criterion id -> error and stores nothing when any is refused."""
    criteria = {c.pk: c for c in study.criteria.all()}
    errors = {}
    for cid, text in texts.items():
        if cid not in criteria:
            errors[cid] = "not a criterion of this study"
            continue
        if len(text) > MAX_RUBRIC_CHARS:
            errors[cid] = f"the rubric is {len(text):,} characters; at most {MAX_RUBRIC_CHARS:,} (it goes into every prompt)"
            continue
        try:
            rubric_scale(text, criterion=criteria[cid].name)
        except RubricError as exc:
            errors[cid] = str(exc)
    if errors:
        return errors
    with transaction.atomic():
        for cid, text in texts.items():
            c = criteria[cid]
            if text.strip() == default_rubric(c.slug, c.name, c.description):
                JudgeRubric.objects.filter(study=study, criterion=c).delete()
            else:
                JudgeRubric.objects.update_or_create(study=study, criterion=c, defaults={"text": text.strip()})
    return {}


def _rubrics_checked(study: Study) -> dict[int, str]:
    """criterion id -> rubric, each checked; RubricError naming the criterion otherwise."""
    out = {}
    for r in rubrics_get(study=study):
        rubric_scale(r["text"], criterion=r["criterion"].name)
        out[r["criterion"].pk] = r["text"]
    return out


# --------------------------------------------------------------------------- tasks


@dataclass(frozen=True)
class JudgeTask:
    key: str
    kind: str
    criterion_id: int | None
    output_id: int
    output_b_id: int | None = None
    question_index: int | None = None
    rubric_sha: str = ""


def _displayed(study: Study) -> dict[int, str]:
    """output id -> sha256 of its rendition, for every output annotators can be shown."""
    renditions_make_for_study(study=study)
    study_index_clear()
    idx = study_index(study)
    return {oid: shown[3] for oid, shown in idx.display.items()}


def judge_tasks_plan(*, study: Study, rubrics: dict[int, str], displayed: dict[int, str]) -> list[JudgeTask]:
    """Every task of the study, those people voted on first (so a sample can be compared with
    them), each group in a fixed shuffled order (so a sample covers generators and prompts)."""
    outputs = list(
        Output.objects.filter(pk__in=list(displayed)).values_list("id", "generator_id", "prompt_id", "prompt__questions")
    )
    by_prompt: dict[int, list[tuple[int, int]]] = {}
    for oid, gid, pid, _ in outputs:
        by_prompt.setdefault(pid, []).append((oid, gid))
    voted = set()
    for kind, cid, left, right in Vote.objects.filter(study=study, is_gold=False).values_list(
        "kind", "criterion_id", "output_left_id", "output_right_id"
    ).distinct():
        pair = (min(left, right), max(left, right)) if right else (left, None)
        voted.add((kind, cid, *pair))
    tasks: list[JudgeTask] = []
    # Per criterion: ratings, good/bad and pairs; yes/no questions come from the prompts, once per output.
    kinds = [k for k in study.vote_kinds if k in (VoteKind.LIKERT, VoteKind.BINARY, VoteKind.PAIRWISE)]
    for criterion in study.criteria.order_by("id"):
        sha = _sha(rubrics[criterion.pk])
        for kind in kinds:
            if kind == VoteKind.PAIRWISE:
                for pid in sorted(by_prompt):
                    members = sorted(by_prompt[pid])
                    for i, (a, ga) in enumerate(members):
                        for b, gb in members[i + 1 :]:
                            if ga != gb:
                                tasks.append(JudgeTask(f"pairwise:{criterion.pk}:{sha}:{a}:{b}", kind, criterion.pk, a, b, rubric_sha=sha))
            else:
                for oid, *_ in sorted(outputs):
                    tasks.append(JudgeTask(f"{kind}:{criterion.pk}:{sha}:{oid}", kind, criterion.pk, oid, rubric_sha=sha))
    for oid, _, _, questions in sorted(outputs):
        for q in range(len(questions or [])):
            tasks.append(JudgeTask(f"question:{oid}:{q}", "question", None, oid, question_index=q))
    first = [t for t in tasks if (t.kind, t.criterion_id, t.output_id, t.output_b_id) in voted]
    rest = [t for t in tasks if (t.kind, t.criterion_id, t.output_id, t.output_b_id) not in voted]
    random.Random(0).shuffle(first)
    random.Random(1).shuffle(rest)
    return first + rest


# --------------------------------------------------------------------------- queueing


MAX_SAMPLE = 1_000_000  # tasks in one sample (a run without a sample judges every task)
MAX_RUBRIC_CHARS = 8_000  # a rubric goes into every prompt a judge is sent


def judge_run_enqueue(*, study: Study, judge: str, sample: int | None = None, user=None) -> JudgeRun:
    """Queue a run of judge ``judge`` on the study (``sample``: its first N tasks only).
    Raises JudgeRunRefused, naming the setting or the rubric, when it could not run."""
    try:
        cfg = judge_get(judge)
    except ImproperlyConfigured as exc:
        raise JudgeRunRefused(str(exc)) from None
    if sample is not None and not 1 <= sample <= MAX_SAMPLE:
        raise JudgeRunRefused(f"the sample must be a number of tasks from 1 to {MAX_SAMPLE:,}, got {sample}")
    try:
        _rubrics_checked(study)
    except RubricError as exc:
        raise JudgeRunRefused(f"{exc} (study setup → judge rubrics)") from None
    unfinished = JudgeRun.objects.filter(
        study=study, fingerprint=cfg.fingerprint, job__status__in=[ScoreJob.Status.PENDING, ScoreJob.Status.RUNNING]
    ).values_list("pk", flat=True).first()
    if unfinished is not None:
        raise JudgeRunRefused(f"Judge run {unfinished} of this judge on {study.slug} is already queued or running; "
                              "it will judge what is left (staff jobs page)")
    with transaction.atomic():
        job = ScoreJob.objects.create(kind=ScoreJob.Kind.JUDGE, scorer=cfg.name, study=study)
        run = JudgeRun.objects.create(
            job=job, study=study, judge=cfg.name, fingerprint=cfg.fingerprint, config=cfg.public(), sample=sample,
            created_by=user if getattr(user, "pk", None) else None,
        )
        transaction.on_commit(lambda: job_dispatch(job_id=job.pk))
    return run


def judge_runs_recent(*, study: Study | None = None, limit: int = 50):
    runs = JudgeRun.objects.select_related("job", "study").order_by("-job__created_at")
    if study is not None:
        runs = runs.filter(study=study)
    return runs[:limit]


def judge_choices() -> dict:
    """For the forms that start a run: the configured judges (or why none can be read) and the studies."""
    try:
        judges, error = list(judges_configured().values()), ""
    except ImproperlyConfigured as exc:
        judges, error = [], str(exc)
    return {"judges": judges, "judge_config_error": error, "judge_studies": list(Study.objects.order_by("name"))}


# --------------------------------------------------------------------------- running


_PAIR_IN_ORDER = {"first": "left", "second": "right", "tie": "tie"}  # output shown first
_PAIR_SWAPPED = {"first": "right", "second": "left", "tie": "tie"}  # output_b shown first


def _requests_for(task: JudgeTask, *, study: Study, prompts: dict, criteria: dict, rubrics: dict, images: dict) -> list[JudgeRequest]:
    text_of, questions_of = prompts[task.output_id]
    if task.kind == "question":
        text = request_text(kind="question", prompt=text_of, question=questions_of[task.question_index])
        return [JudgeRequest(images=(images[task.output_id],), text=text)]
    criterion = criteria[task.criterion_id]
    text = request_text(kind=task.kind, prompt=text_of, question=criterion.question(task.kind), rubric=rubrics[task.criterion_id])
    if task.kind == VoteKind.PAIRWISE:
        a, b = images[task.output_id], images[task.output_b_id]
        return [JudgeRequest(images=(a, b), text=text), JudgeRequest(images=(b, a), text=text)]
    return [JudgeRequest(images=(images[task.output_id],), text=text)]


def _kind_of(task: JudgeTask) -> str:
    return "pairwise" if task.kind == VoteKind.PAIRWISE else task.kind


def _vote_from(task: JudgeTask, run: JudgeRun, replies: list[list[JudgeReply]], verdicts: list) -> JudgeVote:
    raws = ["\n--- asked again ---\n".join(r.text for r in attempts) for attempts in replies]
    flat = [r for attempts in replies for r in attempts]
    vote = JudgeVote(
        run=run, study_id=run.study_id, judge=run.judge, fingerprint=run.fingerprint, task_key=task.key, kind=_kind_of(task),
        criterion_id=task.criterion_id, rubric_sha=task.rubric_sha, output_id=task.output_id, output_b_id=task.output_b_id,
        question_index=task.question_index, prompt_tokens=sum(r.prompt_tokens for r in flat),
        completion_tokens=sum(r.completion_tokens for r in flat), latency_ms=sum(r.latency_ms for r in flat),
    )
    if task.kind == VoteKind.PAIRWISE:
        vote.raw_text = f"[first image: output {task.output_id}]\n{raws[0]}\n\n[first image: output {task.output_b_id}]\n{raws[1]}"
        first = _PAIR_IN_ORDER.get(verdicts[0].value) if verdicts[0] else ""
        second = _PAIR_SWAPPED.get(verdicts[1].value) if verdicts[1] else ""
        vote.choice_first_order, vote.choice_second_order = first or "", second or ""
        if first and second:
            vote.consistent = first == second
            vote.choice = first if vote.consistent else "tie"
        else:
            vote.failed = True
        return vote
    vote.raw_text = raws[0]
    if verdicts[0] is None:
        vote.failed = True
    else:
        vote.score = int(verdicts[0].value)
    return vote


def _answer(backend, requests: list[JudgeRequest], kinds: list[str]) -> tuple[list[list[JudgeReply]], list]:
    """Each request's replies (one, or two when the first could not be read) and its verdict."""
    first = backend.answer_many(requests)
    verdicts = [parse_verdict(k, r.text) for k, r in zip(kinds, first)]
    again = [i for i, v in enumerate(verdicts) if v is None]
    replies = [[r] for r in first]
    if again:
        follow = [
            JudgeRequest(images=requests[i].images, text=requests[i].text, mime=requests[i].mime,
                         followup=(first[i].text, retry_text(kinds[i])))
            for i in again
        ]
        for i, reply in zip(again, backend.answer_many(follow)):
            replies[i].append(reply)
            verdicts[i] = parse_verdict(kinds[i], reply.text)
    return replies, verdicts


def judge_run_work(*, job: ScoreJob) -> None:
    """Run a queued judge run: judge every planned task this configuration has not judged yet."""
    run = JudgeRun.objects.select_related("study").get(job=job)
    study = run.study
    try:
        cfg = judge_get(run.judge)
    except ImproperlyConfigured as exc:
        raise JobFailed(str(exc)) from None
    if cfg.fingerprint != run.fingerprint:
        raise JobFailed(
            f"The configuration of judge {run.judge!r} changed since this run was queued ({cfg.setting}); start a new run"
        )
    try:
        rubrics = _rubrics_checked(study)
    except RubricError as exc:
        raise JobFailed(f"{exc} (study setup → judge rubrics)") from None
    displayed = _displayed(study)
    plan = judge_tasks_plan(study=study, rubrics=rubrics, displayed=displayed)
    if run.sample:
        plan = plan[: run.sample]
    done_keys = set(JudgeVote.objects.filter(fingerprint=run.fingerprint, study=study).values_list("task_key", flat=True))
    todo = [t for t in plan if t.key not in done_keys]
    ScoreJob.objects.filter(pk=job.pk).update(total=len(plan), done=len(plan) - len(todo))
    if not plan:
        raise JobFailed("The study has nothing to judge: no output annotators can be shown (none yet, all withheld by the safety "
                        "screen or withdrawn), or no vote kind or criterion")
    try:
        backend = backend_for(cfg, device=getattr(settings, "ARENA_DEVICE", "auto"))
    except JudgeBackendError as exc:
        raise JobFailed(str(exc)) from None
    prompts = {
        oid: (text, list(questions or []))
        for oid, text, questions in Output.objects.filter(pk__in=list(displayed)).values_list("id", "prompt__text", "prompt__questions")
    }
    criteria = {c.pk: c for c in Criterion.objects.filter(pk__in=list(rubrics))}
    device = str(getattr(backend, "device", "")) or cfg.url
    done = len(plan) - len(todo)
    t0 = time.perf_counter()
    size = max(8, 4 * cfg.concurrency)
    for start in range(0, len(todo), size):
        batch = todo[start : start + size]
        needed = {t.output_id for t in batch} | {t.output_b_id for t in batch if t.output_b_id}
        images = {oid: rendition_path(displayed[oid]).read_bytes() for oid in needed}
        requests, kinds, owner = [], [], []
        for n, task in enumerate(batch):
            reqs = _requests_for(task, study=study, prompts=prompts, criteria=criteria, rubrics=rubrics, images=images)
            requests += reqs
            kinds += [_kind_of(task)] * len(reqs)
            owner += [n] * len(reqs)
        w0 = time.perf_counter()
        try:
            replies, verdicts = _answer(backend, requests, kinds)
        except JudgeBackendError as exc:
            raise JobFailed(f"{exc}; {done} of {len(plan)} task(s) judged so far are kept for the next run") from None
        waited = time.perf_counter() - w0
        votes = []
        for n, task in enumerate(batch):
            mine = [i for i, o in enumerate(owner) if o == n]
            votes.append(_vote_from(task, run, [replies[i] for i in mine], [verdicts[i] for i in mine]))
        with transaction.atomic():
            JudgeVote.objects.bulk_create(votes, ignore_conflicts=True)  # a task another run stored meanwhile stays as it was
            mine = JudgeVote.objects.filter(run=run, task_key__in=[v.task_key for v in votes])
            JudgeRun.objects.filter(pk=run.pk).update(
                verdicts=F("verdicts") + mine.count(), failures=F("failures") + mine.filter(failed=True).count(),
                requests=F("requests") + sum(len(r) for r in replies),
                prompt_tokens=F("prompt_tokens") + sum(v.prompt_tokens for v in votes),
                completion_tokens=F("completion_tokens") + sum(v.completion_tokens for v in votes),
                seconds=F("seconds") + waited,
            )
        done += len(batch)
        _job_progress(job, done, t0, device)
    run.refresh_from_db()
    note = f", {run.failures} unreadable answer(s) recorded as failures" if run.failures else ""
    _job_done(job, done, t0, message=f"{run.verdicts} task(s) judged by {cfg.name} ({cfg.model}){note}")
    judge_reports_refresh(study=study)
    _agreement_refresh(study_id=study.pk)  # the board's audits that read judge answers (question checks) follow
