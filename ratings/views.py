"""Leaderboard pages (researchers and staff; public when the study says so); the JSON API is in api.py."""

from __future__ import annotations

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_POST

from arena import charts, hooks, roles
from arena.models import Annotator, Study
from arena.services import annotator_exclusion_set
from arena.studies import studies_progress_get

from .models import AnnotatorQuality
from .selectors import board_version_get, board_visible_to, categories_get, criterion_of, leaderboard_get
from .services import ratings_catch_up, recompute_request


def board_context(study: Study, criterion, category: str) -> dict:
    board = leaderboard_get(study=study, criterion=criterion, category=category)
    ctx = {"study": study, "criterion": criterion, "category": category, "board": board}
    if board:
        ctx["computed_at"] = parse_datetime(board["computed_at"]) if board.get("computed_at") else None
    if board and board.get("generators"):
        rows = board["generators"]
        settled = [r for r in rows if not r.get("provisional")]  # provisional ratings say too little to plot
        ctx["chart"] = charts.ratings_chart(settled) if settled else ""
        order = board.get("order", [])
        names_by_id = {r["id"]: r["name"] for r in rows}
        pos = {gid: i for i, gid in enumerate(order)}
        ranked = [r["id"] for r in rows if r["id"] in pos and r.get("pairwise_votes")]
        if len(ranked) >= 2 and board.get("win_rate"):
            wr = board["win_rate"]
            cnt = board.get("counts")
            ctx["heatmap"] = charts.heatmap(
                [names_by_id[g] for g in ranked],
                [[wr[pos[a]][pos[b]] for b in ranked] for a in ranked],
                [[cnt[pos[a]][pos[b]] for b in ranked] for a in ranked] if cnt else None,
                title="Win rate of the row generator against the column generator",
            )
    extras = hooks.call("board_extras", study=study, criterion=criterion, board=board, default={})
    ctx["metrics"] = extras.get("metrics")
    ctx["safety"] = (board or {}).get("safety")  # stored by the recompute
    ctx["question_checks"] = (board or {}).get("question_checks")  # stored by the recompute
    ctx["profile"] = extras.get("profile")
    ctx["judges"] = extras.get("judges")
    return ctx


def leaderboard_index(request):
    if not request.user.is_authenticated and not Study.objects.filter(public_leaderboard=True).exists():
        return redirect_to_login(request.get_full_path())
    researcher = roles.is_researcher(request.user)
    studies = list((Study.objects.all() if researcher else Study.objects.filter(public_leaderboard=True)).order_by("name"))
    rows = studies_progress_get(studies) if researcher else [{"study": s} for s in studies]
    return render(request, "ratings/index.html", {"rows": rows, "show_progress": researcher})


def leaderboard_page(request, slug: str):
    study = get_object_or_404(Study, slug=slug)
    if not board_visible_to(request.user, study):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        raise PermissionDenied("Leaderboards are for researchers and staff.")
    ratings_catch_up(study_id=study.pk)
    criterion, criteria = criterion_of(study, request.GET.get("criterion"))
    category = request.GET.get("category", "")
    version = board_version_get(study=study, criterion=criterion, category=category)
    if request.htmx and request.GET.get("since") == version:
        return HttpResponse(status=204)  # nothing new: the page keeps what it shows
    ctx = board_context(study, criterion, category)
    query = request.GET.copy()
    query["since"] = version
    ctx["poll_url"] = f"{request.path}?{query.urlencode()}"
    ctx.update(
        criteria=criteria,
        categories=categories_get(study=study, criterion=criterion),
        can_recompute=roles.is_researcher(request.user),
    )
    template = "ratings/leaderboard.html#board" if request.htmx else "ratings/leaderboard.html"
    return render(request, template, ctx)


@require_POST
def leaderboard_recompute(request, slug: str):
    study = get_object_or_404(Study, slug=slug)
    if not roles.is_researcher(request.user):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        raise PermissionDenied
    recompute_request(study_id=study.pk, now_please=True)
    return redirect("ratings:leaderboard", slug=slug)


@roles.staff_required
def annotators_page(request, slug: str):
    """Staff: the per-annotator quality list (stored by the recompute), those marked for review first."""
    study = get_object_or_404(Study, slug=slug)
    quality = AnnotatorQuality.objects.filter(study=study).first()
    return render(request, "ratings/annotators.html", {"study": study, "quality": quality,
                                                       "flagged": sum(1 for r in (quality.data if quality else []) if r["reasons"])})


@roles.staff_required
@require_POST
def annotator_exclude(request, slug: str, pk: int):
    """Staff: exclude an annotator from every number (votes kept), or include them again."""
    study = get_object_or_404(Study, slug=slug)
    annotator = get_object_or_404(Annotator.objects.filter(votes__study=study).distinct(), pk=pk)
    exclude = request.POST.get("action", "exclude") != "include"
    annotator_exclusion_set(annotator=annotator, excluded=exclude,
                            reason=request.POST.get("reason", "")[:300] or "excluded from the review list")
    return redirect("ratings:annotators", slug=slug)
