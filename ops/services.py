"""The periodic sweep that keeps every derived number current, and worker heartbeats.

Each app owns the catch-up of its own derived state; this module only calls them in turn.
"""

from __future__ import annotations

import logging

from django.utils import timezone

from arena.models import Upload
from arena.services import upload_takeover, uploads_catch_up
from judging.models import ScoreJob
from judging.services import job_takeover, jobs_catch_up
from ratings.models import EloState, RecomputeState
from ratings.services import ratings_catch_up, ratings_rerun

from .models import WorkerBeat

logger = logging.getLogger(__name__)


def derivations_sweep() -> int:
    """Queue every piece of derived work that is owed and has no live message or run: votes not
    yet in the online Elo, lost recompute requests, pending or orphaned imports and scoring jobs.
    Returns how many messages went out. Idempotent; safe to run from every worker at once."""
    sent = 0
    for catch_up in (ratings_catch_up, uploads_catch_up, jobs_catch_up):
        try:
            sent += catch_up()
        except Exception:
            logger.exception("sweep step %s failed", catch_up.__name__)
    if sent:
        logger.info("sweep queued %s message(s)", sent)
    return sent


def worker_beat_record(*, hostname: str, queues: list[str], pid: int, started_at, swept: int | None) -> None:
    now = timezone.now()
    defaults = {"queues": queues, "pid": pid, "started_at": started_at, "seen_at": now}
    if swept is not None:
        defaults.update(last_sweep_at=now, last_sweep_sent=swept)
    WorkerBeat.objects.update_or_create(hostname=hostname, defaults=defaults)


def messages_presumed_lost() -> int:
    """Forget that messages were published for owed work (after the broker restarted, they may
    be gone), so the next sweep publishes them again. Duplicates of messages that survived
    cost a no-op. Returns how many rows were touched."""
    rows = (
        EloState.objects.filter(requested_at__isnull=False),
        RecomputeState.objects.filter(requested_at__isnull=False),
        Upload.objects.filter(status=Upload.Status.PENDING),
        ScoreJob.objects.filter(status=ScoreJob.Status.PENDING),
    )
    return sum(qs.filter(queued_at__isnull=False).update(queued_at=None) for qs in rows)


def worker_tick(*, hostname: str, queues: list[str], pid: int, started_at, sweep: bool, broker_reconnected: bool = False) -> None:
    """One beat of a worker's keeper thread: sweep (default-queue workers) and say it is alive.
    Right after the worker (re)connected to the broker, messages sent before are presumed lost."""
    if sweep and broker_reconnected:
        messages_presumed_lost()
    swept = derivations_sweep() if sweep else None
    worker_beat_record(hostname=hostname, queues=queues, pid=pid, started_at=started_at, swept=swept)


def derivation_rerun(*, what: str, pk: int) -> bool:
    """Staff "re-run": queue the named derivation now, taking over a stuck or failed run."""
    if what == "upload":
        return upload_takeover(upload_id=pk, force=True)
    if what == "job":
        return job_takeover(job_id=pk, force=True)
    if what == "recompute":
        ratings_rerun(study_id=pk)
        return True
    raise ValueError(f"unknown derivation {what!r}; use upload, job or recompute")
