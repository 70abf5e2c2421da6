"""Celery entry points of the judging app, routed to the "gpu" queue (see CELERY_TASK_ROUTES).

Models load lazily, once per worker process, inside the first task that needs them.
"""

import logging

from celery import shared_task

from arena import derived

from . import services
from .judge_runs import judge_run_work
from .models import ScoreJob
from .services import JobFailed

logger = logging.getLogger(__name__)


def _run(task, job_id: int, work) -> None:
    job = services.job_claim(job_id=job_id)
    if job is None:
        return  # done, failed, or being run by another worker
    try:
        with derived.keepalive(ScoreJob, pk=job.pk, status=ScoreJob.Status.RUNNING):
            work(job=job)
    except JobFailed as exc:
        services.job_fail(job=job, error=str(exc))
    except Exception as exc:
        logger.exception("judging job %s failed", job_id)
        error = f"{type(exc).__name__}: {exc}"
        if task.request.retries >= task.max_retries:
            services.job_fail(job=job, error=error)
            return
        services.job_release_for_retry(job=job, error=error)
        raise task.retry(exc=exc, countdown=2 ** task.request.retries)


@shared_task(bind=True, name="judging.score_outputs", acks_late=True, max_retries=3)
def score_outputs_task(self, job_id: int) -> None:
    _run(self, job_id, services.score_outputs_run)


@shared_task(bind=True, name="judging.generator_metrics", acks_late=True, max_retries=3)
def generator_metrics_task(self, job_id: int) -> None:
    _run(self, job_id, services.generator_metrics_run)


@shared_task(bind=True, name="judging.fid", acks_late=True, max_retries=3)
def fid_task(self, job_id: int) -> None:
    _run(self, job_id, services.fid_run)


@shared_task(bind=True, name="judging.judge_study", acks_late=True, max_retries=3)
def judge_study_task(self, job_id: int) -> None:
    _run(self, job_id, judge_run_work)
