"""The annotator's voting pages (htmx: one view serves the page and its #task fragment)."""

from __future__ import annotations

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpResponse
from rest_framework.exceptions import AuthenticationFailed
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from . import questions, roles
from .accounts import client_address, keyed_hash
from .authentication import ExpiringTokenAuthentication
from .models import LIKERT_ANSWERS, Annotator, Assignment, Study, Vote
from .voting import (
    ServedTasks,
    VoteError,
    annotator_completion,
    annotator_done_count,
    annotator_for_crowd,
    annotator_for_user,
    flag_record,
    study_open_to,
    task_image_path,
    task_images,
    tasks_serve,
    vote_record,
)

SESSION_CROWD = "arena_crowd_annotator_{}"
SESSION_STARTED = "arena_started_{}"


def request_annotator(request, study: Study, *, allow_create: bool = False) -> Annotator | None:
    """The annotator behind this request: an account in the annotator group, or a crowd worker's session."""
    user = request.user
    if user.is_authenticated:
        if not roles.is_annotator(user):
            raise PermissionDenied("Your account is not in the annotator group.")
        if not study_open_to(study, user):
            raise PermissionDenied("This study is open to invited annotators only.")
        return annotator_for_user(user)
    key = SESSION_CROWD.format(study.pk)
    pid = (request.GET.get("PROLIFIC_PID") or "").strip()
    pk = request.session.get(key)
    if pk:
        annotator = Annotator.objects.filter(pk=pk, study=study).first()
        # The browser that started a participant resumes it; a different id in the link is someone else.
        if annotator is not None and (not pid or pid == annotator.external_id):
            return annotator
    if allow_create and pid:
        annotator = annotator_for_crowd(
            study=study,
            participant_id=pid,
            study_id=request.GET.get("STUDY_ID", ""),
            session_id=request.GET.get("SESSION_ID", ""),
            client_key=keyed_hash("addr:" + client_address(request)),
        )
        request.session.cycle_key()
        request.session[key] = annotator.pk
        return annotator
    return None


def _not_signed_in() -> HttpResponse:
    return HttpResponse("Log in or open the study link again.", status=401)


KEYS = {
    "likert": "1–5 to rate, S to skip",
    "binary": "G good, B bad, S skip",
    "pairwise": "← left better, → right better, T tie, B both bad, S skip",
    "questions": "Y yes, N no (then the next question), ↑ ↓ move, Enter send, S skip",
}


def _task_context(study: Study, annotator: Annotator, served: ServedTasks | None = None) -> dict:
    served = served or tasks_serve(study=study, annotator=annotator)
    current, ahead, done = served.current, served.ahead, served.done
    completion = annotator_completion(study=study, annotator=annotator, done=done, has_task=current is not None)
    new_block = False
    if current is not None and study.task_blocks:
        last = (
            Assignment.objects.filter(study=study, annotator=annotator, answered_at__isnull=False)
            .order_by("-answered_at").values_list("kind", "criterion_id").first()
        )
        new_block = last is None or last != (current.kind, current.criterion_id)
    return {
        "study": study,
        "task": current,
        "images": task_images(study, current) if current else [],
        "preload": [img["url"] for a in ahead for img in task_images(study, a)],
        "prompt": current.output_left.prompt if current else None,
        "question": current.criterion.question(current.kind) if current else "",
        "keys": KEYS.get(current.kind, "") if current else "",
        "new_block": new_block,
        "block_size": study.block_size,
        "ahead": ahead,
        "done": done,
        "quota": study.quota_per_annotator,
        "complete": completion.state != "working",
        "completion": completion,
        "completion_code": completion.code if completion.code_kind == "completion" else "",
        "crowd": bool(annotator.external_id),
        "likert_range": LIKERT_ANSWERS,
        "questions": questions.task_questions(current.output_left) if current and current.kind == "questions" else [],
    }


def _revealed_context(study: Study, vote: Vote) -> dict:
    """The images just voted on, with their generators' names under them, and a way on."""
    images = task_images(study, vote.assignment)
    names = [vote.generator_left.name] + ([vote.generator_right.name] if vote.generator_right_id else [])
    for img, name in zip(images, names):
        img["generator"] = name
    return {"study": study, "revealed": images, "done": annotator_done_count(study=study, annotator=vote.annotator),
            "quota": study.quota_per_annotator}


def vote_page(request, slug: str):
    study = get_object_or_404(Study, slug=slug)
    try:
        annotator = request_annotator(request, study, allow_create=True)
    except VoteError as exc:
        return render(request, "arena/vote_error.html", {"study": study, "message": str(exc)}, status=exc.status)
    if annotator is None:
        return redirect_to_login(request.get_full_path())
    if not study.is_open:
        if annotator.external_id:  # a crowd worker still gets a code to return with
            return render(request, "arena/vote.html", _task_context(study, annotator))
        return render(request, "arena/vote_error.html", {"study": study, "message": "This study is closed."}, status=403)
    if not request.session.get(SESSION_STARTED.format(study.pk)):
        return render(request, "arena/instructions.html", {"study": study})
    ctx = _task_context(study, annotator)
    template = "arena/vote.html#task" if request.htmx else "arena/vote.html"
    return render(request, template, ctx)


@require_POST
def vote_start(request, slug: str):
    study = get_object_or_404(Study, slug=slug)
    if request_annotator(request, study) is None:
        return redirect_to_login(reverse("arena:vote", args=[slug]))
    request.session[SESSION_STARTED.format(study.pk)] = True
    return redirect("arena:vote", slug=slug)


@require_POST
def vote_answer(request, slug: str):
    study = get_object_or_404(Study, slug=slug)
    annotator = request_annotator(request, study)
    if annotator is None:
        return _not_signed_in()
    try:
        result = vote_record(
            assignment_id=request.POST.get("assignment", ""), annotator=annotator, answer=request.POST.get("answer", ""),
            study=study, question_answers=questions.answers_from_form(request.POST),
            serve_ahead=None if study.reveal_after_vote or not request.htmx else 1,
        )
    except VoteError as exc:
        # The refusal is shown above the task that takes its place (the whole page without htmx).
        ctx = _task_context(study, annotator)
        ctx["error"] = str(exc)
        template = "arena/vote.html#task" if request.htmx else "arena/vote.html"
        return render(request, template, ctx, status=exc.status)
    if result.vote is not None and study.reveal_after_vote:
        # The names go under the images just judged; the next task comes when asked for.
        ctx = _revealed_context(study, result.vote)
        return render(request, "arena/vote.html#task" if request.htmx else "arena/vote.html", ctx)
    if not request.htmx:
        return redirect("arena:vote", slug=slug)
    return render(request, "arena/vote.html#task", _task_context(study, annotator, result.next))


def vote_image(request, slug: str, assignment, side: str):
    """One side of a task the requester was served: its rendition's pixels, at an address of
    that task alone (browsers by session, scripts by API token)."""
    study = get_object_or_404(Study, slug=slug)
    if not request.user.is_authenticated and request.META.get("HTTP_AUTHORIZATION"):
        try:
            found = ExpiringTokenAuthentication().authenticate(request)
        except AuthenticationFailed:
            found = None
        if found:
            request.user = found[0]
    try:
        annotator = request_annotator(request, study)
    except PermissionDenied:
        annotator = None
    a = Assignment.objects.filter(pk=assignment, study=study, annotator=annotator).first() if annotator else None
    path = task_image_path(study, a, side) if a is not None else None
    if path is None or not path.is_file():
        raise Http404("no such image")
    # Named by its side, as the address is: FileResponse would name it by the rendition's file.
    response = FileResponse(open(path, "rb"), content_type="image/webp", filename=f"{side}.webp")
    response["Cache-Control"] = "private, max-age=3600"
    return response


@require_POST
def vote_flag(request, slug: str):
    study = get_object_or_404(Study, slug=slug)
    annotator = request_annotator(request, study)
    if annotator is None:
        return _not_signed_in()
    try:
        flag_record(
            annotator=annotator,
            assignment_id=request.POST.get("assignment", ""),
            side=request.POST.get("side", "left"),
            reason=request.POST.get("reason", ""),
            note=request.POST.get("note", ""),
            study=study,
        )
    except VoteError as exc:
        return HttpResponse(str(exc), status=exc.status, content_type="text/plain; charset=utf-8")
    if request.htmx:
        return HttpResponse('<span class="flagged" role="status">Thanks, the image was flagged for review.</span>')
    return redirect("arena:vote", slug=slug)
