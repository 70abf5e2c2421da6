"""Staff pages of the judging app: judge rubrics and starting judge runs (the jobs page is in ops; the API in api.py)."""

from django.contrib import messages
from django.core.exceptions import ImproperlyConfigured
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from arena import roles
from arena.models import Study

from .judge_conf import judges_configured
from .judge_runs import MAX_RUBRIC_CHARS, JudgeRunRefused, judge_run_enqueue, judge_runs_recent, rubrics_get, rubrics_save


@roles.staff_required
def judge_rubrics_page(request, slug: str):
    """Staff: the judge rubric of each criterion of a study (part of its setup), and starting a run.
    Every rubric is checked before any is stored."""
    study = get_object_or_404(Study, slug=slug)
    errors_by_criterion: dict[int, str] = {}
    typed: dict[int, str] = {}
    if request.method == "POST":
        typed = {c.pk: request.POST.get(f"rubric-{c.pk}", "") for c in study.criteria.all()}
        errors_by_criterion = rubrics_save(study=study, texts=typed)
        if not errors_by_criterion:
            messages.success(request, "Judge rubrics saved.")
            return redirect("judging:rubrics", slug=slug)
    rubrics = rubrics_get(study=study)
    for r in rubrics:
        cid = r["criterion"].pk
        r["error"] = errors_by_criterion.get(cid, "")
        if cid in typed:
            r["text"] = typed[cid][:MAX_RUBRIC_CHARS + 1000]  # a refused, very long text is not sent back whole
    try:
        judges = list(judges_configured().values())
        config_error = ""
    except ImproperlyConfigured as exc:
        judges, config_error = [], str(exc)
    ctx = {"study": study, "rubrics": rubrics, "judges": judges, "config_error": config_error,
           "runs": judge_runs_recent(study=study)[:10]}
    template = "judging/rubrics.html#rubrics" if request.htmx else "judging/rubrics.html"
    return render(request, template, ctx, status=400 if errors_by_criterion else 200)


@roles.staff_required
@require_POST
def judge_run_start(request, slug: str | None = None):
    """Staff: start a judge run from the jobs page (study picked in the form) or the study's judge page."""
    study = get_object_or_404(Study, slug=slug or request.POST.get("study", ""))
    slug = study.slug
    sample = request.POST.get("sample", "").strip()
    try:
        n = int(sample) if sample else None
        run = judge_run_enqueue(study=study, judge=request.POST.get("judge", ""), sample=n, user=request.user)
    except ValueError:
        messages.error(request, f"Nothing queued: the sample must be a number of tasks, got {sample!r}.")
    except JudgeRunRefused as exc:
        messages.error(request, f"Nothing queued: {exc}")
    else:
        messages.success(request, f"Queued judge run {run.pk}: {run.judge} on {study.slug}.")
    if request.POST.get("next") == "rubrics":
        return redirect("judging:rubrics", slug=slug)
    return redirect("ops:jobs")
