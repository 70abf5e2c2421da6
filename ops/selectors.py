"""Reads for the health endpoint and the staff jobs page: is anything derived left behind?"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from celery import current_app
from django.db import connection
from django.db.models import Count, Min, Q
from django.utils import timezone

from arena import derived
from arena.models import Upload, Vote
from judging.models import ScoreJob
from ratings.models import RecomputeState

from .models import WorkerBeat

WORKER_SEEN_WITHIN = timedelta(minutes=1)


def database_check() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return "ok"


def broker_check() -> str:
    try:
        with current_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0.2, interval_max=0.2, timeout=2)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return "ok"


@dataclass
class Pending:
    """One piece of derived work that is owed."""

    kind: str  # "elo", "recompute", "upload", "job"
    pk: int  # the id to re-run with: study id (elo, recompute), upload id, job id
    label: str
    since: datetime
    state: str
    stuck: bool

    @property
    def age_seconds(self) -> float:
        return max(0.0, (timezone.now() - self.since).total_seconds())


def pending_get() -> list[Pending]:
    """Every owed derivation, oldest first; `stuck` when it is older than the stale bound and no
    live run is on it (the sweep queues it again; staff can too)."""
    now = timezone.now()
    stale = now - derived.stale_after()
    items: list[Pending] = []
    for row in (
        Vote.objects.filter(elo_applied=False).values("study_id", "study__slug", "criterion__slug")
        .annotate(n=Count("id"), since=Min("created_at")).order_by()
    ):
        items.append(Pending(
            "elo", row["study_id"], f"online Elo of {row['study__slug']} / {row['criterion__slug']}: {row['n']} vote(s) to apply",
            row["since"], "requested", row["since"] < stale,
        ))
    for st in RecomputeState.objects.filter(Q(requested_at__isnull=False) | Q(running=True)).select_related("study"):
        live = st.running and not derived.heartbeat_stale(st.heartbeat_at, now=now)
        since = st.requested_at or st.started_at
        items.append(Pending(
            "recompute", st.study_id, f"full recompute of {st.study.slug}", since,
            "running" if live else ("requested" if st.requested_at else "run stopped"),
            not live and since < stale,
        ))
    for up in Upload.objects.filter(status__in=[Upload.Status.PENDING, Upload.Status.RUNNING]):
        live = up.status == Upload.Status.RUNNING and not derived.heartbeat_stale(up.heartbeat_at, now=now)
        items.append(Pending(
            "upload", up.pk, f"import of upload {up.pk} ({up.source_name})", up.created_at,
            up.status if live or up.status == Upload.Status.PENDING else "run stopped", not live and up.created_at < stale,
        ))
    for job in ScoreJob.objects.filter(status__in=[ScoreJob.Status.PENDING, ScoreJob.Status.RUNNING]):
        live = job.status == ScoreJob.Status.RUNNING and not derived.heartbeat_stale(job.heartbeat_at, now=now)
        items.append(Pending(
            "job", job.pk, f"scoring job {job.pk} ({job.get_kind_display()} · {job.scorer})", job.created_at,
            job.status if live or job.status == ScoreJob.Status.PENDING else "run stopped", not live and job.created_at < stale,
        ))
    items.sort(key=lambda p: p.since)
    return items


def workers_seen() -> list[WorkerBeat]:
    return list(WorkerBeat.objects.filter(seen_at__gte=timezone.now() - WORKER_SEEN_WITHIN).order_by("hostname"))


def health_get() -> dict:
    """Database, broker, workers seen in the last minute, and the oldest owed derivation."""
    database = database_check()
    out = {"database": database, "broker": broker_check(), "workers": [], "pending": [], "oldest_pending_seconds": None}
    if database != "ok":
        out["status"] = "down"
        return out
    pending = pending_get()
    out["workers"] = [
        {"hostname": w.hostname, "queues": w.queues, "seen_at": w.seen_at.isoformat(),
         "last_sweep_at": w.last_sweep_at.isoformat() if w.last_sweep_at else None}
        for w in workers_seen()
    ]
    out["pending"] = [
        {"kind": p.kind, "id": p.pk, "what": p.label, "since": p.since.isoformat(), "age_seconds": round(p.age_seconds, 1),
         "state": p.state, "stuck": p.stuck}
        for p in pending
    ]
    out["oldest_pending_seconds"] = round(pending[0].age_seconds, 1) if pending else None
    ok = out["broker"] == "ok" and out["workers"] and not any(p.stuck for p in pending)
    out["status"] = "ok" if ok else "degraded"
    return out
