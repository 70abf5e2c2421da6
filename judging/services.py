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
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.utils import timezone

from arena import derived
from arena.models import Generator, Image, Output, Study
from arena.selectors import study_outputs
from ratings.services import recompute_request
from ratings.stats import wilson_interval

from . import metrics as M
from .judge_conf import judge_get
from .models import Embedding, GeneratorMetric, OutputScore, ReferenceSet, ScoreJob
from .scorers import ModelUnavailable, ScoreItem, WeightsUnavailable, get_scorer, scorer_class

logger = logging.getLogger(__name__)

MAX_ERRORS = 50


class JobFailed(Exception):
    """A job that cannot succeed by retrying (bad configuration, missing weights)."""


# --------------------------------------------------------------------------- configuration


def scorer_config(name: str) -> dict:
    """Keyword arguments for ``get_scorer(name, **config)`` from the settings (ARENA_CLIP_MODEL,
    ARENA_CLIP_PRETRAINED, ARENA_VQA_MODEL, ARENA_FID_WEIGHTS, ARENA_ONNX_PROVIDER, ARENA_DEVICE;
    read and checked once, in the settings module)."""
    configs = {
        "clip": {"model_name": settings.ARENA_CLIP_MODEL, "pretrained": settings.ARENA_CLIP_PRETRAINED},
        "vqa": {"model": settings.ARENA_VQA_MODEL},
        "fid": {"weights": settings.ARENA_FID_WEIGHTS},
        "ocr": {"provider": settings.ARENA_ONNX_PROVIDER},
        "nsfw": {"provider": settings.ARENA_ONNX_PROVIDER},
        "quality": {},
    }
    try:
        config = configs[name]
    except KeyError:
        raise KeyError(f"no settings for scorer {name!r}; known: {sorted(configs)}") from None
    return {**config, "device": settings.ARENA_DEVICE}


def scorer_load(name: str):
    """The configured scorer, loaded once per worker process (raises JobFailed on a model
    that is missing, corrupt or cannot run here)."""
    cls = scorer_class(name)
    try:
        cls.prepare()
        config = scorer_config(name)
        if settings.ARENA_SCORE_BATCH_SIZE:  # 0: each scorer's declared batch size
            config.setdefault("batch_size", settings.ARENA_SCORE_BATCH_SIZE)
        return get_scorer(name, **config)
    except (WeightsUnavailable, ModelUnavailable) as exc:
        raise JobFailed(str(exc)) from None


def model_id_for(name: str) -> str:
    """The model id stored with scorer ``name``'s results under the current settings."""
    return scorer_class(name).model_id(scorer_config(name))


def scorer_queue(name: str) -> str:
    """The queue a scorer's jobs run on: the GPU queue if it declares ``needs_gpu``, else the CPU one."""
    return settings.ARENA_GPU_QUEUE if scorer_class(name).needs_gpu else settings.ARENA_CPU_QUEUE


# --------------------------------------------------------------------------- queueing


def scoring_enqueue_outputs(*, output_ids: list[int]) -> list[ScoreJob]:
    """After an import: one scoring job per configured scorer that scores outputs, queued on the
    scorer's queue once the rows commit; FID follows when configured and a reference exists."""
    jobs = []
    for name in settings.ARENA_SCORERS:
        if not scorer_class(name).measures:
            continue
        job = ScoreJob.objects.create(kind=ScoreJob.Kind.SCORE, scorer=name, output_ids=list(output_ids), total=len(output_ids))
        transaction.on_commit(lambda pk=job.pk: job_dispatch(job_id=pk))
        jobs.append(job)
    if "fid" in settings.ARENA_SCORERS and ReferenceSet.objects.exists():
        studies = Study.objects.filter(generators__outputs__in=output_ids).values_list("pk", flat=True).distinct()
        for study_id in set(studies):
            jobs.append(fid_enqueue(study_id=study_id))
    return jobs


def metrics_enqueue(*, study_id: int, scorer: str) -> ScoreJob:
    """Per-generator metrics of one scorer for a study, on the scorer's queue."""
    job = ScoreJob.objects.create(kind=ScoreJob.Kind.METRICS, scorer=scorer, study_id=study_id)
    transaction.on_commit(lambda: job_dispatch(job_id=job.pk))
    return job


def job_requeue(*, job: ScoreJob) -> None:
    """Staff: send a failed, or pending but lost, job again (see job_takeover)."""
    job_takeover(job_id=job.pk, force=True)


def _job_task(job: ScoreJob):
    from .tasks import fid_task, generator_metrics_task, judge_study_task, score_outputs_task

    if job.kind == ScoreJob.Kind.JUDGE:
        return judge_study_task
    if job.kind == ScoreJob.Kind.SCORE:
        return score_outputs_task
    if not scorer_class(job.scorer).measures:  # a set-level scorer: the FID pass
        return fid_task
    return generator_metrics_task


def job_dispatch(*, job_id: int) -> bool:
    """Queue a pending job on its scorer's queue unless a message for it is already on its way
    (never raises: with the broker down the job stays pending and the sweep queues it)."""
    job = ScoreJob.objects.filter(pk=job_id, status=ScoreJob.Status.PENDING).first()
    if job is None:
        return False
    return derived.dispatch(
        ScoreJob, pk=job.pk, requested_at=job.created_at, queued_at=job.queued_at, task=_job_task(job), args=(job.pk,),
        queue=_job_queue(job),
    )


def _job_queue(job: ScoreJob) -> str:
    """A judge's runs go to the GPU queue for a model in the worker's process, to the CPU queue
    for an endpoint (no GPU needed here); a scorer's to the queue it declares."""
    if job.kind != ScoreJob.Kind.JUDGE:
        return scorer_queue(job.scorer)
    try:
        kind = judge_get(job.scorer).queue_kind
    except ImproperlyConfigured:  # the run fails with the reason on whichever worker takes it
        kind = "gpu"
    return settings.ARENA_GPU_QUEUE if kind == "gpu" else settings.ARENA_CPU_QUEUE


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
    cls = scorer_class(name)
    scorer = scorer_load(name)
    model_id = model_id_for(name)
    device = str(getattr(scorer, "device", ""))
    done_ids = set(OutputScore.objects.filter(output_id__in=job.output_ids, scorer=name, model_id=model_id).values_list("output_id", flat=True))
    outputs = list(Output.objects.filter(pk__in=job.output_ids).exclude(pk__in=done_ids).select_related("image", "prompt"))
    done = len(done_ids)
    t0 = time.perf_counter()
    size = int(getattr(scorer, "batch_size", 0) or cls.default_batch_size)
    for start in range(0, len(outputs), size):
        batch = outputs[start : start + size]
        # The model runs outside any transaction; the batch's scores are written in one.
        rows = output_scores_compute(cls=cls, scorer=scorer, outputs=batch, model_id=model_id)
        with transaction.atomic():
            OutputScore.objects.bulk_create(rows, ignore_conflicts=True)
        done += len(batch)
        _job_progress(job, done, t0, device)
    skipped = OutputScore.objects.filter(output_id__in=job.output_ids, scorer=name, model_id=model_id, value__isnull=True).count()
    note = f", {skipped} skipped (see details)" if skipped else ""
    _job_done(job, done, t0, message=f"{done} output(s) scored with {model_id}{note}")
    studies = set(
        Study.objects.filter(generators__outputs__in=job.output_ids).values_list("pk", flat=True).distinct()
    )
    for study_id in studies:
        metrics_enqueue(study_id=study_id, scorer=name)


def output_scores_compute(*, cls, scorer, outputs: list[Output], model_id: str) -> list[OutputScore]:
    """Unsaved OutputScore rows for ``outputs``. Scorers that embed images read and fill the
    embedding cache and score from the cached vectors; the others read the image files."""
    items = [
        ScoreItem(image=None, prompt=o.prompt.text, questions=tuple(o.prompt.questions or ()), text=o.target_text)
        for o in outputs
    ]
    if cls.embeds_images:
        emb = _vectors_cached([o.image_id for o in outputs], model_id, scorer.embed_images)
        results = scorer.score_embeddings(np.stack([emb[o.image_id] for o in outputs]), [i.prompt for i in items])
    else:
        handles = [_open(o.image) for o in outputs]
        try:
            results = scorer.score_batch([ScoreItem(image=fh, prompt=i.prompt, questions=i.questions, text=i.text) for fh, i in zip(handles, items)])
        finally:
            for fh in handles:
                fh.close()
    rows = []
    for o, item, result in zip(outputs, items, results):
        value, details = cls.record(result, item)
        rows.append(OutputScore(output=o, scorer=cls.name, model_id=model_id, value=value, details=details))
    return rows


# --------------------------------------------------------------------------- per-generator metrics


def _agreement_refresh(*, study_id: int) -> None:
    """New metric values: the board's stored agreement with people is recomputed with the next run."""
    recompute_request(study_id=study_id, now_please=True)


def generator_metrics_run(*, job: ScoreJob) -> None:
    """Per-generator metrics one scorer declares: means (t interval) or shares at the
    screening threshold (Wilson interval) of its per-output measures; for scorers that embed
    images, diversity and FD / CMMD against the newest reference set."""
    cls = scorer_class(job.scorer)
    study = Study.objects.get(pk=job.study_id)
    t0 = time.perf_counter()
    model_id = model_id_for(cls.name)
    outputs = list(study_outputs(study).values_list("id", "generator_id", "prompt_id", "image_id"))
    by_gen: dict[int, list[tuple[int, int, str]]] = defaultdict(list)
    for oid, gid, pid, sha in outputs:
        by_gen[gid].append((oid, pid, sha))
    stored = {
        oid: (value, details or {})
        for oid, value, details in OutputScore.objects.filter(
            output_id__in=[o[0] for o in outputs], scorer=cls.name, model_id=model_id
        ).values_list("output_id", "value", "details")
    }
    written = 0
    with transaction.atomic():
        for g in study.generators.all():
            items = by_gen.get(g.pk, [])
            scored = [stored[oid] for oid, _, _ in items if oid in stored]
            for metric in cls.metrics:
                if metric.per_output is None:
                    continue
                vals = [v for v in (cls.measure_value(metric.per_output, value, d) for value, d in scored) if v is not None]
                if not vals:
                    continue
                if metric.aggregate == "share_at_threshold":
                    hits = sum(v >= study.screen_threshold for v in vals)
                    low, high = wilson_interval(hits, len(vals))
                    value, details = hits / len(vals), {"count": hits, "threshold": study.screen_threshold}
                else:
                    value, low, high = M.mean_interval(vals)
                    if low is not None:  # a t interval may run past a bounded measure's range
                        lo_bound, hi_bound = metric.range
                        low = low if lo_bound is None else max(low, lo_bound)
                        high = high if hi_bound is None else min(high, hi_bound)
                    details = {}
                    if metric is cls.metrics[0]:
                        details = _question_shares([d["questions"] for _, d in scored if d.get("questions")])
                _metric_save(g, study, metric.key, value, len(vals), details={**details, "ci_low": low, "ci_high": high})
                written += 1
        if cls.embeds_images:
            written += _embedding_metrics(cls.name, model_id, study, by_gen)
    _job_done(job, written, t0, message=f"{written} generator metric(s) from {cls.name} for study {study.slug}")
    _agreement_refresh(study_id=study.pk)


def _embedding_metrics(name: str, model_id: str, study: Study, by_gen: dict) -> int:
    """Diversity, FD and CMMD of cached image embeddings (the scorer embeds the reference set)."""
    emb = _embeddings_get([sha for items in by_gen.values() for _, _, sha in items], model_id)
    reference = ReferenceSet.objects.filter(images__isnull=False).order_by("-created_at").first()
    ref_stats = ref_emb = None
    if reference is not None:
        ref_ids = list(reference.images.values_list("sha256", flat=True))
        ref_map = _vectors_cached(ref_ids, model_id, lambda files: scorer_load(name).embed_images(files))
        ref_emb = np.stack([ref_map[s] for s in ref_ids]) if ref_map else None
        if ref_emb is not None and len(ref_emb) >= 2:
            ref_stats = M.prepare_reference(*M.gaussian_stats(ref_emb.astype(np.float64)))
    written = 0
    with transaction.atomic():
        for g in study.generators.all():
            items = by_gen.get(g.pk, [])
            per_prompt = defaultdict(list)
            for _, pid, sha in items:
                if sha in emb:
                    per_prompt[pid].append(emb[sha])
            divs = [M.mean_pairwise_cosine_distance(np.stack(v)) for v in per_prompt.values() if len(v) >= 2]
            if divs:
                _metric_save(g, study, "diversity", float(np.mean(divs)), len(divs))
                written += 1
            vecs = [emb[sha] for _, _, sha in items if sha in emb]
            if ref_stats is not None and len(vecs) >= 2:
                gen_emb = np.stack(vecs)
                mu, sigma = M.gaussian_stats(gen_emb.astype(np.float64))
                _metric_save(g, study, "fd_clip", M.frechet_distance_to_reference(ref_stats, mu, sigma), len(gen_emb), reference)
                _metric_save(g, study, "cmmd", M.cmmd(gen_emb, ref_emb), len(gen_emb), reference)
                written += 2
    return written


def _metric_save(
    generator: Generator, study: Study, metric: str, value: float | None, n: int,
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
    """From one Inception pass per generator: FID against the reference set's statistics,
    and, from the same features, Inception Score (the network's logits), KID, precision /
    recall and density / coverage against the reference images. A metric the sample sizes
    do not allow is stored empty with the reason."""
    study = Study.objects.get(pk=job.study_id)
    reference = job.reference or ReferenceSet.objects.order_by("-created_at").first()
    if reference is None:
        raise JobFailed("FID needs a reference set: import one with `manage.py import_reference`")
    if not reference.inception_stats and not reference.images.exists():
        raise JobFailed(f"reference set {reference.name!r} is empty: it has no images and no statistics")
    scorer = scorer_load("fid")
    model_id = model_id_for("fid")
    t0 = time.perf_counter()
    ref_mu, ref_sigma, ref_feats = _reference_inception_stats(reference, scorer, model_id)
    ref = M.prepare_reference(ref_mu, ref_sigma)
    done = 0
    for g in study.generators.all():
        shas = list(study_outputs(study).filter(generator=g).values_list("image_id", flat=True))
        if len(shas) < 2:
            continue
        feats = _inception_features(shas, scorer, model_id)
        mu, sigma = M.gaussian_stats(feats)
        _metric_save(g, study, "fid", M.frechet_distance_to_reference(ref, mu, sigma), len(shas), reference)
        _distribution_metrics_save(g, study, reference, feats, ref_feats, scorer.logits_from_features(feats))
        done += 1
        _job_progress(job, done, t0, str(getattr(scorer, "device", "")))
    _job_done(job, done, t0, message=f"FID, IS, KID, precision/recall, density/coverage for {done} generator(s) against {reference.name}")
    _agreement_refresh(study_id=job.study_id)


def _distribution_metrics_save(g, study, reference, feats, ref_feats, logits) -> None:
    n = len(feats)

    def save(key: str, compute, ref: ReferenceSet | None = reference) -> None:
        try:
            value = compute()
        except M.TooFewSamples as exc:
            _metric_save(g, study, key, None, n, ref, details={"unavailable": str(exc)})
            return
        if isinstance(value, tuple):
            _metric_save(g, study, key, value[0], n, ref, details={"std": value[1]})
        else:
            _metric_save(g, study, key, value, n, ref)

    save("inception_score", lambda: M.inception_score(logits, splits=10), None)
    if ref_feats is None:
        for key in ("kid", "precision", "recall", "density", "coverage"):
            _metric_save(g, study, key, None, n, reference, details={"unavailable": "the reference set holds statistics only, no images"})
        return
    save("kid", lambda: M.kid(ref_feats, feats, subsets=100, subset_size=settings.ARENA_KID_SUBSET_SIZE))
    pr = _try(lambda: M.precision_recall(ref_feats, feats, k=3))
    dc = _try(lambda: M.density_coverage(ref_feats, feats, k=5))
    for key, result, i in (("precision", pr, 0), ("recall", pr, 1), ("density", dc, 0), ("coverage", dc, 1)):
        if isinstance(result, str):
            _metric_save(g, study, key, None, n, reference, details={"unavailable": result})
        else:
            _metric_save(g, study, key, result[i], n, reference)


def _try(compute):
    try:
        return compute()
    except M.TooFewSamples as exc:
        return str(exc)


def _inception_features(shas: list[str], scorer, model_id: str) -> np.ndarray:
    cached = _vectors_cached(shas, model_id, scorer.features)
    return np.stack([cached[s] for s in shas]).astype(np.float64)


def _reference_inception_stats(reference: ReferenceSet, scorer, model_id: str):
    """(mu, sigma, features or None) of the reference set."""
    if reference.inception_stats:
        with np.load(reference.inception_stats) as f:
            return f["mu"], f["sigma"], None
    shas = list(reference.images.values_list("sha256", flat=True))
    feats = _inception_features(shas, scorer, model_id)
    return (*M.gaussian_stats(feats), feats)


def fid_enqueue(*, study_id: int, reference: ReferenceSet | None = None) -> ScoreJob:
    job = ScoreJob.objects.create(kind=ScoreJob.Kind.METRICS, scorer="fid", study_id=study_id, reference=reference)
    transaction.on_commit(lambda: job_dispatch(job_id=job.pk))
    return job


def jobs_recent(*, limit: int = 50):
    return ScoreJob.objects.select_related("study", "reference").order_by("-created_at")[:limit]



def jobs_of_study(*, study: Study, limit: int = 10) -> list[ScoreJob]:
    """The study's latest scoring jobs, newest first (its overview page lists them)."""
    return list(ScoreJob.objects.filter(study=study).order_by("-id")[:limit])
