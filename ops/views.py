"""The staff jobs page: everything derived, stuck or not (its health figures are also in the API, api.py)."""

from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from arena import roles
from judging.judge_runs import judge_choices, judge_runs_recent
from judging.models import ScoreJob
from judging.services import jobs_recent

from .selectors import broker_check, database_check, pending_get, workers_seen
from .services import derivation_rerun


@roles.staff_required
def jobs_page(request):
    template = "judging/jobs.html#jobs" if request.htmx else "judging/jobs.html"
    jobs = list(jobs_recent())
    pending = pending_get()
    active = bool(pending) or any(j.status in (ScoreJob.Status.PENDING, ScoreJob.Status.RUNNING) for j in jobs)
    ctx = {
        "jobs": jobs, "active": active, "pending": pending, "workers": workers_seen(),
        "database": database_check(), "broker": broker_check(), "oldest": pending[0] if pending else None,
        "judge_runs": list(judge_runs_recent(limit=20)), **judge_choices(),
    }
    return render(request, template, ctx)


@roles.staff_required
@require_POST
def derivation_rerun_view(request):
    what = request.POST.get("what", "")
    try:
        pk = int(request.POST.get("id", ""))
        queued = derivation_rerun(what=what, pk=pk)
    except ValueError as exc:
        messages.error(request, f"Nothing re-run: {exc}")
        return redirect("ops:jobs")
    if queued:
        messages.success(request, f"Queued {what} {pk} again.")
    else:
        messages.info(request, f"{what} {pk} has a live run or a message on its way; nothing else queued.")
    return redirect("ops:jobs")
