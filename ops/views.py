"""Health for load balancers and staff, and the staff jobs page (everything derived, stuck or not)."""

from django.contrib import messages
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from arena import roles
from judging.models import ScoreJob
from judging.services import jobs_recent

from .selectors import health_get, pending_get, workers_seen
from .services import derivation_rerun


def healthz(request):
    """200 while the database answers (votes can be taken), 503 otherwise. Staff see details."""
    health = health_get()
    status = 503 if health["database"] != "ok" else 200
    if not (request.user.is_authenticated and request.user.is_staff):
        health = {
            "status": health["status"], "database": health["database"] == "ok" and "ok" or "down",
            "broker": health["broker"] == "ok" and "ok" or "down", "workers_seen": len(health["workers"]),
            "oldest_pending_seconds": health["oldest_pending_seconds"],
            "stuck": sum(1 for p in health["pending"] if p["stuck"]),
        }
    return JsonResponse(health, status=status)


class HealthApi(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(responses=dict)
    def get(self, request):
        health = health_get()
        return Response(health, status=503 if health["database"] != "ok" else 200)


@roles.staff_required
def jobs_page(request):
    template = "judging/jobs.html#jobs" if request.htmx else "judging/jobs.html"
    jobs = list(jobs_recent())
    pending = pending_get()
    active = bool(pending) or any(j.status in (ScoreJob.Status.PENDING, ScoreJob.Status.RUNNING) for j in jobs)
    return render(request, template, {"jobs": jobs, "active": active, "pending": pending, "workers": workers_seen()})


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
