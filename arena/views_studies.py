"""Staff and researcher pages for running a study: setup, try as annotator, overview, flags review."""

from __future__ import annotations

import secrets

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from . import charts, hooks, roles
from .forms import GoldTaskForm, StudySetupForm, WithdrawForm
from .models import Output, Study, WithdrawnOutput
from .services import output_withdrawal_set
from .studies import (
    flags_for_review, gold_task_create, study_capacity_of, study_output_thumbnails, study_overview_get, study_preview_task,
    study_save,
)


def _setup(request, study: Study | None):
    form = StudySetupForm(request.POST or None, instance=study)
    if request.method == "POST" and form.is_valid():
        study = study_save(form=form, new_criterion=form.new_criterion())
        return redirect("arena:study_edit", slug=study.slug)
    ctx = {"form": form, "study": study, "capacity": form.capacity or (study_capacity_of(study) if study else None)}
    if study is not None:
        outputs = study_output_thumbnails(study)
        ctx.update(gold_form=GoldTaskForm(study=study, outputs=outputs), outputs=outputs,
                   gold_tasks=study.gold_tasks.select_related("criterion", "output__image", "other_output__image"))
    return render(request, "arena/study_setup.html", ctx, status=400 if form.errors else 200)


@roles.staff_required
@require_http_methods(["GET", "POST"])
def study_new(request):
    return _setup(request, None)


@roles.staff_required
@require_http_methods(["GET", "POST"])
def study_edit(request, slug: str):
    return _setup(request, get_object_or_404(Study, slug=slug))


@roles.staff_required
@require_POST
def study_preview(request):
    """htmx: what the form as filled in would serve, and why it cannot be saved if so."""
    study = None
    if request.POST.get("study"):
        study = Study.objects.filter(slug=request.POST["study"]).first()
    form = StudySetupForm(request.POST, instance=study)
    form.is_valid()
    return render(request, "arena/study_setup.html#preview", {"capacity": form.capacity, "form": form})


@roles.staff_required
@require_POST
def study_gold_add(request, slug: str):
    study = get_object_or_404(Study, slug=slug)
    outputs = study_output_thumbnails(study)
    form = GoldTaskForm(request.POST, study=study, outputs=outputs)
    if form.is_valid():
        gold_task_create(study=study, by=request.user, **form.cleaned_data)
        return redirect("arena:study_edit", slug=slug)
    setup = StudySetupForm(instance=study)
    return render(request, "arena/study_setup.html", {
        "form": setup, "study": study, "capacity": study_capacity_of(study), "gold_form": form, "outputs": outputs,
        "gold_tasks": study.gold_tasks.select_related("criterion", "output__image", "other_output__image"),
    }, status=400)


@roles.staff_required
def study_try(request, slug: str):
    """Walk the study's tasks as an annotator sees them; nothing is stored."""
    study = get_object_or_404(Study, slug=slug)
    try:
        seed = int(request.GET.get("seed", ""))
    except ValueError:
        seed = secrets.randbelow(2**31)
    task = study_preview_task(study, seed=seed)
    return render(request, "arena/study_try.html", {"study": study, "task": task, "seed": seed,
                                                    "next_seed": secrets.randbelow(2**31)})


def _researcher_or_login(request):
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    if not roles.is_researcher(request.user):
        raise PermissionDenied("Study overviews are for researchers and staff.")
    return None


def study_overview(request, slug: str):
    refused = _researcher_or_login(request)
    if refused:
        return refused
    study = get_object_or_404(Study, slug=slug)
    overview = study_overview_get(study=study)
    jobs = hooks.call("study_jobs", study=study, default=[])
    return render(request, "arena/study_overview.html", {
        "study": study, "o": overview, "chart": charts.votes_over_time_chart(
            overview["series"], bucket_seconds=3600.0 if overview["series_unit"] == "hour" else 86400.0), "jobs": jobs,
        "criteria": list(study.criteria.all()),
    })


@roles.staff_required
def flags_review(request, slug: str):
    study = get_object_or_404(Study, slug=slug)
    withdrawn = {w.output_id: w for w in WithdrawnOutput.objects.filter(study=study).select_related("by")}
    rows = []
    by_output: dict[int, dict] = {}
    for flag in flags_for_review(study=study):
        row = by_output.get(flag.output_id)
        if row is None:
            row = by_output[flag.output_id] = {"output": flag.output, "flags": [], "withdrawn": withdrawn.get(flag.output_id)}
            rows.append(row)
        row["flags"].append(flag)
    return render(request, "arena/flags.html", {"study": study, "rows": rows, "withdrawn": withdrawn.values()})


@roles.staff_required
@require_POST
def output_withdraw(request, slug: str, pk: int):
    study = get_object_or_404(Study, slug=slug)
    output = get_object_or_404(Output, pk=pk)
    form = WithdrawForm(request.POST)
    if not form.is_valid():
        return redirect("arena:flags_review", slug=slug)
    withdraw = form.cleaned_data["action"] == "withdraw"
    output_withdrawal_set(study=study, output=output, withdrawn=withdraw,
                          reason=form.cleaned_data["reason"] or "withdrawn after review", by=request.user)
    if withdraw:
        output.flags.filter(assignment__study=study).update(resolved=True)
    return redirect("arena:flags_review", slug=slug)
