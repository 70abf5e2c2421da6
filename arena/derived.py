"""Bookkeeping shared by every piece of derived state (online Elo, full recompute, imports,
scoring jobs), so that none can wedge.

Each state row records when its work was asked for (`requested_at`, or `created_at` for a
pending upload or job), when a message was last published for it (`queued_at`), and, while a
run holds it, a heartbeat (`heartbeat_at`) that a background thread of the running process
keeps fresh. From those three times anyone (the next vote, the next page view, the worker's
periodic sweep) can tell a lost message or a dead run and queue the work again. Tasks are
idempotent, so a duplicate message costs a no-op.

Publishing never raises: with the broker down the request stays recorded in the database and
is queued once the broker is back.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timedelta

from django.conf import settings
from django.db import close_old_connections, connection
from django.db.models import Q
from django.utils import timezone

logger = logging.getLogger(__name__)

# After a failed publish this process stops trying for a moment (votes must stay fast while the
# broker is down); the sweep or a later vote queues the work once it is back.
BROKER_BACKOFF_SECONDS = 3.0
_broker_down_until = 0.0


def stale_after() -> timedelta:
    return timedelta(seconds=settings.ARENA_DERIVATION_STALE_SECONDS)


def publish(task, *args, countdown: float | None = None, queue: str | None = None) -> bool:
    """Queue `task(*args)` (on `queue`, else its routed one); False (logged, never raised) when the
    broker cannot take it."""
    global _broker_down_until
    if time.monotonic() < _broker_down_until:
        return False
    try:
        options = {"queue": queue} if queue else {}
        task.apply_async(args, countdown=countdown or None, **options)
    except Exception as exc:  # broker down, DNS, timeouts: the state row stays "requested"
        if getattr(task.app.conf, "task_always_eager", False):
            raise  # eager tasks run here: their failures are the caller's
        _broker_down_until = time.monotonic() + BROKER_BACKOFF_SECONDS
        logger.warning("could not queue %s%r (%s: %s); it will be queued again", task.name, args, type(exc).__name__, exc)
        return False
    return True


def publish_backoff_clear() -> None:
    global _broker_down_until
    _broker_down_until = 0.0


def dispatch_due(*, requested_at: datetime | None, queued_at: datetime | None, now: datetime) -> bool:
    """Whether a requested piece of work needs a message now.

    Yes when none was published since the request, or the last one is older than the stale bound
    and older than the time the work had already waited before it (so work that waits in a long
    queue, e.g. behind a GPU job, is re-queued at doubling intervals, not every sweep).
    """
    if requested_at is None:
        return False
    if queued_at is None:
        return True
    waited_before = max(queued_at - requested_at, timedelta(0))
    return now - queued_at > max(stale_after(), waited_before)


def dispatch(model, *, pk, requested_at, queued_at, task, args: tuple, countdown: float | None = None, now=None,
             queue: str | None = None) -> bool:
    """Publish `task(*args)` for a state row if it is due, marking `queued_at` atomically first
    (so two callers never both publish). True when a message went out."""
    now = now or timezone.now()
    if time.monotonic() < _broker_down_until or not dispatch_due(requested_at=requested_at, queued_at=queued_at, now=now):
        return False
    rows = model.objects.filter(pk=pk)
    rows = rows.filter(queued_at__isnull=True) if queued_at is None else rows.filter(queued_at=queued_at)
    if not rows.update(queued_at=now):
        return False  # someone else just queued it
    if publish(task, *args, countdown=countdown, queue=queue):
        return True
    model.objects.filter(pk=pk, queued_at=now).update(queued_at=None)
    return False


def status_rows_catch_up(model, *, dispatch, takeover) -> int:
    """For rows with a `status` of "pending"/"running" (uploads, scoring jobs): `dispatch(pk)` every
    pending one (it publishes only if due) and `takeover(pk)` every running one whose heartbeat
    stopped. Returns how many were queued."""
    sent = 0
    for pk in model.objects.filter(status="pending").values_list("pk", flat=True):
        sent += bool(dispatch(pk))
    stale = timezone.now() - stale_after()
    running = model.objects.filter(status="running").filter(Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=stale))
    for pk in running.values_list("pk", flat=True):
        sent += bool(takeover(pk))
    return sent


def heartbeat_stale(heartbeat_at: datetime | None, *, now=None) -> bool:
    return heartbeat_at is None or (now or timezone.now()) - heartbeat_at > stale_after()


@contextmanager
def keepalive(model, *, pk, **claim):
    """While the block runs, a background thread refreshes the row's `heartbeat_at` (through its
    own database connection, so it shows even while the block holds a long transaction).

    `claim` narrows the update to this run's claim (e.g. `status="running"`): a run that was
    taken over stops refreshing a row that is no longer its own.
    """
    every = max(0.5, settings.ARENA_DERIVATION_STALE_SECONDS / 4)
    stop = threading.Event()

    def beat():
        try:
            while not stop.wait(every):
                try:
                    close_old_connections()
                    model.objects.filter(pk=pk, **claim).update(heartbeat_at=timezone.now())
                except Exception:
                    logger.exception("heartbeat of %s %s failed", model.__name__, pk)
        finally:
            connection.close()

    thread = threading.Thread(target=beat, name=f"keepalive-{model.__name__}-{pk}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)
