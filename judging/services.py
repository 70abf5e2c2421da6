"""Scoring jobs: queue them after uploads, run them on the GPU worker, store results per batch.

Every job is claimed with a conditional UPDATE, so a retry or a second worker never runs it
twice; each batch is written in one transaction, so a failure never leaves half a batch.
Outputs already scored (and images whose embedding is cached) cost nothing the next time.
"""

from __future__ import annotations

import io
import logging
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from arena import derived
from arena.models import Generator, Image, Output, Study

from . import metrics as M
from .models import Embedding, GeneratorMetric, OutputScore, ReferenceSet, ScoreJob

logger = logging.getLogger(__name__)

MAX_ERRORS = 50


class JobFailed(Exception):
    """A job that cannot succeed by retrying (bad configuration, missing weights)."""


# --------------------------------------------------------------------------- configuration


def _register_clip_config() -> None:
    path = getattr(settings, "ARENA_CLIP_MODEL_CONFIG", "")
    if path:
        import open_clip

        if not Path(path).is_file():
            raise JobFailed(f"ARENA_CLIP_MODEL_CONFIG points to {path!r}, which is not a file")
        open_clip.add_model_config(path)


def clip_model_id() -> str:
    return f"open_clip:{settings.ARENA_CLIP_MODEL}:{Path(settings.ARENA_CLIP_PRETRAINED).name}"


def scorer_load(name: str):
    """The configured scorer, loaded once per worker process (raises JobFailed on bad weights)."""
    from .conf import scorer_settings
    from .scorers import WeightsUnavailable, get_scorer

    if name == "clip":
        _register_clip_config()
    config = scorer_settings().scorer_config(name)
    config.setdefault("batch_size", settings.ARENA_SCORE_BATCH_SIZE)
    try:
        return get_scorer(name, **config)
    except WeightsUnavailable as exc:
        raise JobFailed(str(exc)) from None


def model_id_for(name: str) -> str:
    if name == "clip":
        return clip_model_id()
    if name == "vqa":
        return f"vqa:{settings.ARENA_VQA_MODEL}"
    return f"inception-fid:{Path(settings.ARENA_FID_WEIGHTS).name or 'unset'}"


# --------------------------------------------------------------------------- queueing


def scoring_enqueue_outputs(*, output_ids: list[int]) -> list[ScoreJob]:
    """After an import: one scoring job per configured scorer, queued once the rows commit."""
    jobs = []
    for name in settings.ARENA_SCORERS:
        if name not in ("clip", "vqa"):
            continue
        job = ScoreJob.objects.create(kind=ScoreJob.Kind.SCORE, scorer=name, output_ids=list(output_ids), total=len(output_ids))
        transaction.on_commit(lambda pk=job.pk: job_dispatch(job_id=pk))
        jobs.append(job)
    return jobs


def metrics_enqueue(*, study_id: int) -> ScoreJob:
    job = ScoreJob.objects.create(kind=ScoreJob.Kind.METRICS, scorer="clip", study_id=study_id)
    transaction.on_commit(lambda: job_dispatch(job_id=job.pk))
    return job


def _job_task(job: ScoreJob):
    from .tasks import fid_task, generator_metrics_task, score_outputs_task

    if job.kind == ScoreJob.Kind.SCORE:
        return score_outputs_task
    return fid_task if job.scorer == "fid" else generator_metrics_task


def job_dispatch(*, job_id: int) -> bool:
    """Queue a pending job unless a message for it is already on its way (never raises: with the
    broker down the job stays pending and the sweep queues it)."""
    job = ScoreJob.objects.filter(pk=job_id, status=ScoreJob.Status.PENDING).first()
    if job is None:
        return False
    return derived.dispatch(
        ScoreJob, pk=job.pk, requested_at=job.created_at, queued_at=job.queued_at, task=_job_task(job), args=(job.pk,)
    )


def job_takeover(*, job_id: int, force: bool = False) -> bool:
    """Put back a job whose worker died (heartbeat stopped) so it runs again from the start;
    `force` (staff "re-run") also takes a failed one. Scores already written are kept, so the
    new run only does what is left. True if the job was put back (or re-queued)."""
    now = timezone.now()
    job = ScoreJob.objects.filter(pk=job_id).first()
    if job is None:
        return False
    if job.status == ScoreJob.Status.PENDING:
        if force:
            ScoreJob.objects.filter(pk=job_id).update(queued_at=None)
        return job_dispatch(job_id=job_id)
    if job.status == ScoreJob.Status.RUNNING and derived.heartbeat_stale(job.heartbeat_at, now=now):
        lookup = {"status": ScoreJob.Status.RUNNING, "heartbeat_at": job.heartbeat_at}
        error = "the worker running this job stopped; queued again"
    elif job.status == ScoreJob.Status.FAILED and force:
        lookup = {"status": ScoreJob.Status.FAILED}
        error = "re-run by staff"
    else:
        return False
    errors = (job.errors or []) + [{"at": now.isoformat(), "error": error}]
    if not ScoreJob.objects.filter(pk=job_id, **lookup).update(
        status=ScoreJob.Status.PENDING, heartbeat_at=None, queued_at=None, started_at=None, finished_at=None,
        done=0, attempts=job.attempts + 1, errors=errors[-MAX_ERRORS:], message="",
    ):
        return False
    logger.warning("scoring job %s put back: %s", job_id, error)
    return job_dispatch(job_id=job_id)


def jobs_catch_up() -> int:
    """Queue pending jobs whose message was lost; put back running jobs whose worker died."""
    return derived.status_rows_catch_up(
        ScoreJob, dispatch=lambda pk: job_dispatch(job_id=pk), takeover=lambda pk: job_takeover(job_id=pk)
    )


def job_claim(*, job_id: int) -> ScoreJob | None:
    now = timezone.now()
    claimed = ScoreJob.objects.filter(pk=job_id, status=ScoreJob.Status.PENDING).update(
        status=ScoreJob.Status.RUNNING, started_at=now, heartbeat_at=now, queued_at=None
    )
    return ScoreJob.objects.get(pk=job_id) if claimed else None


def job_release_for_retry(*, job: ScoreJob, error: str) -> None:
    """A transient failure: record it and put the job back so the retry can claim it."""
    errors = (job.errors or []) + [{"at": timezone.now().isoformat(), "error": error}]
    # Marked queued: the retry message follows with a countdown far below the stale bound.
    ScoreJob.objects.filter(pk=job.pk).update(
        status=ScoreJob.Status.PENDING, attempts=job.attempts + 1, errors=errors[-MAX_ERRORS:], queued_at=timezone.now()
    )


def job_fail(*, job: ScoreJob, error: str) -> None:
    errors = (job.errors or []) + [{"at": timezone.now().isoformat(), "error": error}]
    ScoreJob.objects.filter(pk=job.pk).update(
        status=ScoreJob.Status.FAILED, message=error, errors=errors[-MAX_ERRORS:], finished_at=timezone.now()
    )


def _job_progress(job: ScoreJob, done: int, t0: float, device: str = "") -> None:
    rate = done / max(time.perf_counter() - t0, 1e-9)
    ScoreJob.objects.filter(pk=job.pk).update(done=done, items_per_second=rate, device=device)


def _job_done(job: ScoreJob, done: int, t0: float, message: str = "") -> None:
    rate = done / max(time.perf_counter() - t0, 1e-9)
    ScoreJob.objects.filter(pk=job.pk).update(
        status=ScoreJob.Status.DONE, done=done, items_per_second=rate, finished_at=timezone.now(), message=message
    )


# --------------------------------------------------------------------------- scoring outputs


def _open(image: Image) -> io.BufferedReader:
    return open(Path(settings.MEDIA_ROOT) / image.relative_path, "rb")


def _embeddings_get(image_ids: list[str], model_id: str) -> dict[str, np.ndarray]:
    return {
        sha: np.frombuffer(bytes(vec), dtype=np.float32)
        for sha, vec in Embedding.objects.filter(image_id__in=image_ids, model_id=model_id).values_list("image_id", "vector")
    }


def _vectors_cached(shas: list[str], model_id: str, compute) -> dict[str, np.ndarray]:
    """Per-image vectors of one model: read from the cache, computing and storing the missing
    ones with ``compute(open image files) -> (n, d) array``."""
    cached = _embeddings_get(shas, model_id)
    need = [s for s in dict.fromkeys(shas) if s not in cached]
    if need:
        images = list(Image.objects.filter(sha256__in=need))
        handles = [_open(i) for i in images]
        try:
            vectors = np.asarray(compute(handles), dtype=np.float32)
        finally:
            for fh in handles:
                fh.close()
        Embedding.objects.bulk_create(
            [Embedding(image=i, model_id=model_id, dim=v.size, vector=v.tobytes()) for i, v in zip(images, vectors)],
            ignore_conflicts=True,
        )
        cached.update({i.sha256: v for i, v in zip(images, vectors)})
    return cached


def score_outputs_run(*, job: ScoreJob) -> None:
    """Score the job's outputs not yet scored by this model, batch by batch."""
    name = job.scorer
    scorer = scorer_load(name)
    model_id = model_id_for(name)
    device = str(getattr(scorer, "device", ""))
    done_ids = set(OutputScore.objects.filter(output_id__in=job.output_ids, scorer=name, model_id=model_id).values_list("output_id", flat=True))
    outputs = list(Output.objects.filter(pk__in=job.output_ids).exclude(pk__in=done_ids).select_related("image", "prompt"))
    done = len(done_ids)
    t0 = time.perf_counter()
    size = int(getattr(scorer, "batch_size", settings.ARENA_SCORE_BATCH_SIZE) or 32)
    for start in range(0, len(outputs), size):
        batch = outputs[start : start + size]
        # The model runs outside any transaction; the batch's scores are written in one.
        rows = _clip_batch(scorer, batch, model_id) if name == "clip" else _vqa_batch(scorer, batch)
        with transaction.atomic():
            OutputScore.objects.bulk_create(rows, ignore_conflicts=True)
        done += len(batch)
        _job_progress(job, done, t0, device)
    _job_done(job, done, t0, message=f"{done} output(s) scored with {model_id}")
    studies = set(
        Study.objects.filter(generators__outputs__in=job.output_ids).values_list("pk", flat=True).distinct()
    )
    fid = "fid" in settings.ARENA_SCORERS and ReferenceSet.objects.exists()
    for study_id in studies:
        metrics_enqueue(study_id=study_id)
        if fid:
            fid_enqueue(study_id=study_id)


def _clip_batch(scorer, batch: list[Output], model_id: str):
    emb = _vectors_cached([o.image_id for o in batch], model_id, scorer.embed_images)
    txt = scorer.encode_texts([o.prompt.text for o in batch]).float().cpu().numpy()
    rows = []
    for o, t in zip(batch, txt):
        cos = float(np.dot(emb[o.image_id], t))
        rows.append(OutputScore(output=o, scorer="clip", model_id=model_id, value=100.0 * max(cos, 0.0), details={"cosine": cos}))
    return rows


def _vqa_batch(scorer, batch: list[Output]):
    from .scorers import ScoreItem

    items = []
    handles = []
    for o in batch:
        fh = _open(o.image)
        handles.append(fh)
        items.append(ScoreItem(image=fh, prompt=o.prompt.text, questions=tuple(o.prompt.questions or ())))
    try:
        results = scorer.score_batch(items)
    finally:
        for fh in handles:
            fh.close()
    rows = []
    for o, r in zip(batch, results):
        details = {}
        if o.prompt.questions:
            details = {
                "questions": [{"question": q, "p_yes": float(p)} for q, p in zip(o.prompt.questions, r.question_probabilities)],
                "yes_share": float(r.yes_share),
            }
        rows.append(OutputScore(output=o, scorer="vqa", model_id=model_id_for("vqa"), value=float(r.score), details=details))
    return rows


# --------------------------------------------------------------------------- per-generator metrics


def generator_metrics_run(*, job: ScoreJob) -> None:
    """Mean CLIP score and VQAScore, diversity, and FD-CLIP / CMMD against the newest reference set."""
    study = Study.objects.get(pk=job.study_id)
    t0 = time.perf_counter()
    clip_id = clip_model_id()
    gens = list(study.generators.all())
    from arena.voting import study_outputs

    outputs = list(study_outputs(study).values_list("id", "generator_id", "prompt_id", "image_id"))
    by_gen: dict[int, list[tuple[int, int, str]]] = defaultdict(list)
    for oid, gid, pid, sha in outputs:
        by_gen[gid].append((oid, pid, sha))
    scores = defaultdict(lambda: defaultdict(list))
    answers: dict[int, list[dict]] = {}
    for oid, scorer, value, details in OutputScore.objects.filter(output_id__in=[o[0] for o in outputs]).values_list(
        "output_id", "scorer", "value", "details"
    ):
        scores[scorer][oid].append(value)
        if scorer == "vqa" and details.get("questions"):
            answers[oid] = details["questions"]
    emb = _embeddings_get([o[3] for o in outputs], clip_id)
    reference = ReferenceSet.objects.filter(images__isnull=False).order_by("-created_at").first()
    ref_stats = ref_emb = None
    if reference is not None:
        ref_ids = list(reference.images.values_list("sha256", flat=True))
        ref_map = _vectors_cached(ref_ids, clip_id, lambda files: scorer_load("clip").embed_images(files))
        ref_emb = np.stack([ref_map[s] for s in ref_ids]) if ref_map else None
        if ref_emb is not None and len(ref_emb) >= 2:
            ref_stats = M.prepare_reference(*M.gaussian_stats(ref_emb.astype(np.float64)))
    written = 0
    with transaction.atomic():
        for g in gens:
            items = by_gen.get(g.pk, [])
            for metric, key in ((GeneratorMetric.Metric.CLIP_SCORE, "clip"), (GeneratorMetric.Metric.VQASCORE, "vqa")):
                vals = [v for oid, _, _ in items for v in scores[key].get(oid, [])]
                if vals:
                    details = _question_shares([answers[oid] for oid, _, _ in items if oid in answers]) if key == "vqa" else {}
                    _metric_save(g, study, metric, float(np.mean(vals)), len(vals), details=details)
                    written += 1
            per_prompt = defaultdict(list)
            for _, pid, sha in items:
                if sha in emb:
                    per_prompt[pid].append(emb[sha])
            divs = [M.mean_pairwise_cosine_distance(np.stack(v)) for v in per_prompt.values() if len(v) >= 2]
            if divs:
                _metric_save(g, study, GeneratorMetric.Metric.DIVERSITY, float(np.mean(divs)), len(divs))
                written += 1
            gen_emb = np.stack([emb[sha] for _, _, sha in items if sha in emb]) if any(sha in emb for _, _, sha in items) else None
            if ref_stats is not None and gen_emb is not None and len(gen_emb) >= 2:
                mu, sigma = M.gaussian_stats(gen_emb.astype(np.float64))
                _metric_save(g, study, GeneratorMetric.Metric.FD_CLIP, M.frechet_distance_to_reference(ref_stats, mu, sigma), len(gen_emb), reference)
                _metric_save(g, study, GeneratorMetric.Metric.CMMD, M.cmmd(gen_emb, ref_emb), len(gen_emb), reference)
                written += 2
    _job_done(job, written, t0, message=f"{written} generator metric(s) for study {study.slug}")


def _metric_save(
    generator: Generator, study: Study, metric: str, value: float, n: int,
    reference: ReferenceSet | None = None, details: dict | None = None,
) -> None:
    GeneratorMetric.objects.update_or_create(
        generator=generator, study=study, metric=metric, reference=reference,
        defaults={"value": value, "n": n, "details": details or {}},
    )


def _question_shares(per_output: list[list[dict]]) -> dict:
    """Decomposed VQAScore: for each yes/no question, the share of outputs answered yes (P > 0.5)."""
    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for questions in per_output:
        for q in questions:
            tally[q["question"]][0] += int(q["p_yes"] > 0.5)
            tally[q["question"]][1] += 1
    return {"questions": {q: {"yes_share": yes / n, "n": n} for q, (yes, n) in tally.items()}} if tally else {}


# --------------------------------------------------------------------------- FID


def fid_run(*, job: ScoreJob) -> None:
    """FID of each generator of the study against the reference set's Inception statistics."""
    study = Study.objects.get(pk=job.study_id)
    reference = job.reference or ReferenceSet.objects.order_by("-created_at").first()
    if reference is None:
        raise JobFailed("FID needs a reference set: import one with `manage.py import_reference`")
    scorer = scorer_load("fid")
    model_id = model_id_for("fid")
    t0 = time.perf_counter()
    ref_mu, ref_sigma = _reference_inception_stats(reference, scorer, model_id)
    ref = M.prepare_reference(ref_mu, ref_sigma)
    from arena.voting import study_outputs

    done = 0
    for g in study.generators.all():
        shas = list(study_outputs(study).filter(generator=g).values_list("image_id", flat=True))
        if len(shas) < 2:
            continue
        feats = _inception_features(shas, scorer, model_id)
        mu, sigma = M.gaussian_stats(feats)
        _metric_save(g, study, GeneratorMetric.Metric.FID, M.frechet_distance_to_reference(ref, mu, sigma), len(shas), reference)
        done += 1
        _job_progress(job, done, t0, str(getattr(scorer, "device", "")))
    _job_done(job, done, t0, message=f"FID for {done} generator(s) against {reference.name}")


def _inception_features(shas: list[str], scorer, model_id: str) -> np.ndarray:
    cached = _vectors_cached(shas, model_id, scorer.features)
    return np.stack([cached[s] for s in shas]).astype(np.float64)


def _reference_inception_stats(reference: ReferenceSet, scorer, model_id: str):
    if reference.inception_stats:
        with np.load(reference.inception_stats) as f:
            return f["mu"], f["sigma"]
    shas = list(reference.images.values_list("sha256", flat=True))
    return M.gaussian_stats(_inception_features(shas, scorer, model_id))


def fid_enqueue(*, study_id: int, reference: ReferenceSet | None = None) -> ScoreJob:
    job = ScoreJob.objects.create(kind=ScoreJob.Kind.METRICS, scorer="fid", study_id=study_id, reference=reference)
    transaction.on_commit(lambda: job_dispatch(job_id=job.pk))
    return job


def jobs_recent(*, limit: int = 50):
    return ScoreJob.objects.select_related("study", "reference").order_by("-created_at")[:limit]

