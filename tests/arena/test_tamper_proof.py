"""No one votes as someone else, past the quota, across studies, or with input that does harm."""

import re
import threading
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.utils import timezone

from arena.models import Annotator, Assignment, Output, Study, Vote
from tests.conftest import api_client_for, client_for

pytestmark = pytest.mark.django_db


def aid_in(page: str) -> str | None:
    m = re.search(r'name="assignment" value="([0-9a-f-]{36})"', page)
    return m.group(1) if m else None


def answer_for(aid: str) -> str:
    return {"likert": "3", "binary": "good", "pairwise": "right"}[Assignment.objects.get(pk=aid).kind]


# --------------------------------------------------------------------------- reveal


def test_an_output_whose_generator_was_revealed_is_never_served_again(annotator_user, make_study):
    study = make_study(kinds=("pairwise", "likert"), prompts=4, reveal_after_vote=True, quota_per_annotator=200)
    c = client_for(annotator_user)
    c.post(f"/vote/{study.slug}/start/")
    page = c.get(f"/vote/{study.slug}/").content.decode()
    revealed: set[int] = set()
    shown_after_reveal = 0
    for _ in range(60):
        aid = aid_in(page)
        if aid is None:
            break
        a = Assignment.objects.get(pk=aid)
        outputs = {a.output_left_id, a.output_right_id} - {None}
        assert not outputs & revealed, "a task showed an image whose generator this annotator was already told"
        shown_after_reveal += bool(revealed)
        shown = c.post(f"/vote/{study.slug}/answer/", {"assignment": aid, "answer": answer_for(aid)}, HTTP_HX_REQUEST="true").content.decode()
        v = Vote.objects.get(assignment_id=aid)
        # The names are shown now, under these images: they are spent for this annotator.
        assert f'class="generator">{v.generator_left.name}<' in shown
        revealed |= outputs
        page = c.get(f"/vote/{study.slug}/", HTTP_HX_REQUEST="true").content.decode()
        # No task reserved ahead (and preloaded) may hold them either.
        for pending in Assignment.objects.filter(annotator__user=annotator_user, answered_at__isnull=True,
                                                 expires_at__gt=timezone.now()):
            assert not ({pending.output_left_id, pending.output_right_id} & revealed)
    assert shown_after_reveal >= 5
    assert len(revealed) >= 10


# --------------------------------------------------------------------------- crowd identity


def crowd_url(study, pid, session="", extra=""):
    url = f"/vote/{study.slug}/?PROLIFIC_PID={pid}&STUDY_ID=S1"
    if session:
        url += f"&SESSION_ID={session}"
    return url + extra


def test_a_participant_id_alone_cannot_resume_someone_elses_work(make_study):
    study = make_study(quota_per_annotator=2, prolific_completion_url="https://app.prolific.com/submissions/complete?cc=X")
    owner = client_for(None)
    owner.get(crowd_url(study, "P-OWNER", "sess-owner-1"))
    owner.post(f"/vote/{study.slug}/start/")
    page = owner.get(f"/vote/{study.slug}/").content.decode()
    held = aid_in(page)
    for _ in range(2):
        aid = aid_in(page)
        page = owner.post(f"/vote/{study.slug}/answer/", {"assignment": aid, "answer": answer_for(aid)}, HTTP_HX_REQUEST="true").content.decode()
    assert study.completion_code in page  # the owner, who did the work, gets the code

    for url in (crowd_url(study, "P-OWNER"), crowd_url(study, "P-OWNER", "guessed-session")):
        thief = client_for(None)
        res = thief.get(url)
        body = res.content.decode()
        assert res.status_code == 403
        assert "already started the study in another browser" in body
        assert study.completion_code not in body and held not in body
        thief.post(f"/vote/{study.slug}/start/")
        assert thief.get(f"/vote/{study.slug}/").status_code == 302  # no annotator in this browser: back to log in
        assert thief.post(f"/vote/{study.slug}/answer/", {"assignment": held, "answer": "left"}).status_code == 401
    assert Annotator.objects.filter(study=study).count() == 1

    # The same Prolific session (the link from the dashboard) resumes it on another device.
    back = client_for(None)
    res = back.get(crowd_url(study, "P-OWNER", "sess-owner-1"))
    assert res.status_code == 200
    back.post(f"/vote/{study.slug}/start/")
    assert study.completion_code in back.get(f"/vote/{study.slug}/").content.decode()


def test_the_completion_code_needs_the_votes_first(make_study):
    study = make_study(quota_per_annotator=3)
    c = client_for(None)
    c.get(crowd_url(study, "P-NEW", "s-new"))
    c.post(f"/vote/{study.slug}/start/")
    page = c.get(f"/vote/{study.slug}/").content.decode()
    assert study.completion_code not in page and aid_in(page)


def test_new_crowd_participants_are_limited_per_client_address(make_study, settings):
    settings.ARENA_CROWD_SIGNUPS_PER_HOUR = 3
    study = make_study()
    for k in range(3):
        assert client_for(None).get(crowd_url(study, f"P-{k}", f"s-{k}")).status_code == 200
    res = client_for(None).get(crowd_url(study, "P-made-up", "s-x"))
    assert res.status_code == 429
    assert "Too many new participants have started from your network" in res.content.decode()
    assert not Annotator.objects.filter(external_id="P-made-up").exists()
    # Another address is not held back by this one.
    assert client_for(None).get(crowd_url(study, "P-elsewhere", "s-e"), REMOTE_ADDR="198.51.100.7").status_code == 200
    assert Annotator.objects.filter(study=study).count() == 4


# --------------------------------------------------------------------------- quota under concurrency


@pytest.mark.django_db(transaction=True)
def test_the_quota_holds_however_many_requests_race(make_study, annotator_user):
    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL")
    study = make_study(quota_per_annotator=3, prompts=6)
    results, errors = [], []
    barrier = threading.Barrier(24)

    def ask():
        from django.db import connections

        try:
            api = api_client_for(annotator_user)
            barrier.wait(timeout=30)
            res = api.get(f"/api/studies/{study.slug}/next-task/")
            results.append(res.status_code)
        except Exception as exc:  # pragma: no cover - shown in the assertion
            errors.append(repr(exc))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=ask) for _ in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and results.count(200) == 24
    open_tasks = list(Assignment.objects.filter(annotator__user=annotator_user, answered_at__isnull=True))
    assert 1 <= len(open_tasks) <= 3
    api = api_client_for(annotator_user)
    statuses = [api.post(f"/api/studies/{study.slug}/votes/", {"assignment": str(a.pk), "answer": "tie" if a.kind == "pairwise" else ("good" if a.kind == "binary" else "3")}, format="json").status_code
                for a in open_tasks]
    assert statuses.count(201) == len(open_tasks)
    assert Vote.objects.filter(annotator__user=annotator_user).count() <= 3


def test_a_vote_past_the_quota_is_refused(make_study, annotator_user):
    study = make_study(quota_per_annotator=1, kinds=("binary",))
    api = api_client_for(annotator_user)
    first = api.get(f"/api/studies/{study.slug}/next-task/").json()["task"]
    annotator = Annotator.objects.get(user=annotator_user)
    # A second assignment made behind the server's back (as two racing servers once could).
    extra = Assignment.objects.create(
        study=study, criterion=study.criteria.get(), annotator=annotator, kind="binary",
        output_left=Output.objects.exclude(pk=Assignment.objects.get(pk=first["assignment"]).output_left_id).first(),
        item_key="forged", served_at=timezone.now(), expires_at=timezone.now() + timedelta(minutes=5),
    )
    assert api.post(f"/api/studies/{study.slug}/votes/", {"assignment": first["assignment"], "answer": "good"}, format="json").status_code == 201
    res = api.post(f"/api/studies/{study.slug}/votes/", {"assignment": str(extra.pk), "answer": "good"}, format="json")
    assert res.status_code == 403 and "already given this study's 1 votes" in res.json()["detail"]
    assert Vote.objects.count() == 1


# --------------------------------------------------------------------------- studies are separate


def test_what_was_skipped_in_one_study_does_not_empty_another(make_study, annotator_user):
    a = make_study(kinds=("binary",), prompts=2, slug="first")
    b = Study.objects.create(name="Second", slug="second", vote_kinds=["binary"])
    b.criteria.set(a.criteria.all())
    b.generators.set(a.generators.all())
    b.prompts.set(a.prompts.all())
    api = api_client_for(annotator_user)
    skipped = 0
    while (task := api.get("/api/studies/first/next-task/").json()["task"]) is not None:
        api.post("/api/studies/first/votes/", {"assignment": task["assignment"], "answer": "skip"}, format="json")
        skipped += 1
    assert skipped == Output.objects.count()
    nxt = api.get("/api/studies/second/next-task/").json()
    assert nxt["task"] is not None


def test_a_vote_posted_under_another_studys_url_is_refused(make_study, annotator_user):
    a = make_study(kinds=("binary",), slug="home-study")
    make_study(kinds=("binary",), slug="other-study")
    api = api_client_for(annotator_user)
    task = api.get("/api/studies/home-study/next-task/").json()["task"]
    res = api.post("/api/studies/other-study/votes/", {"assignment": task["assignment"], "answer": "good"}, format="json")
    assert res.status_code == 404 and res.json()["detail"] == "no such task was served to you in this study"
    web = client_for(annotator_user)
    web.post("/vote/other-study/start/")
    res = web.post("/vote/other-study/answer/", {"assignment": task["assignment"], "answer": "good"})
    assert res.status_code == 404 and "no such task was served to you in this study" in res.content.decode()
    assert Vote.objects.count() == 0
    assert api.post("/api/studies/home-study/votes/", {"assignment": task["assignment"], "answer": "good"}, format="json").status_code == 201
    assert a.votes.count() == 1


def test_a_study_can_be_limited_to_named_annotators_or_groups(make_study, annotator_user, django_user_model):
    study = make_study(slug="invited")
    guest = django_user_model.objects.create_user("gus", password="pw-gus-12345")
    guest.groups.add(Group.objects.get(name="annotator"))
    panel = Group.objects.create(name="panel")
    member = django_user_model.objects.create_user("mia", password="pw-mia-12345")
    member.groups.add(Group.objects.get(name="annotator"), panel)
    study.allowed_users.add(annotator_user)
    study.allowed_groups.add(panel)
    from arena.voting import study_index_clear

    study_index_clear()
    for user, expected in ((annotator_user, 200), (member, 200), (guest, 403)):
        assert client_for(user).get("/vote/invited/").status_code == expected
        assert api_client_for(user).get("/api/studies/invited/next-task/").status_code == expected
        assert ("invited" in client_for(user).get("/").content.decode()) == (expected == 200)
    res = client_for(None).get(crowd_url(study, "P-crowd", "s-c"))
    assert res.status_code == 403 and "open to invited annotators only" in res.content.decode()
    assert not Annotator.objects.filter(external_id="P-crowd").exists()


# --------------------------------------------------------------------------- bad input, clear 4xx


def test_an_invalid_answer_is_quoted_short(make_study, annotator_user):
    study = make_study(kinds=("likert",))
    web = client_for(annotator_user)
    web.post(f"/vote/{study.slug}/start/")
    aid = aid_in(web.get(f"/vote/{study.slug}/").content.decode())
    huge = "x" * 9_000_000
    res = web.post(f"/vote/{study.slug}/answer/", {"assignment": aid, "answer": huge}, HTTP_HX_REQUEST="true")
    assert res.status_code == 400
    body = res.content.decode()
    assert "is not valid for a likert task" in body and "9,000,000 characters" in body
    assert len(body) < 20_000 and "x" * 101 not in body
    api = api_client_for(annotator_user)
    res = api.post(f"/api/studies/{study.slug}/votes/", {"assignment": aid, "answer": huge}, format="json")
    assert res.status_code == 400 and len(res.content) < 1000 and res.json()["answer"]
    assert Vote.objects.count() == 0


def test_an_output_withdrawn_by_staff_is_never_served(make_study, admin_user):
    from arena.models import WithdrawnOutput
    from arena.voting import study_index_clear
    from tests.conftest import task_next

    study = make_study(kinds=("binary",), prompts=2, quota_per_annotator=100)
    gone = Output.objects.first()
    WithdrawnOutput.objects.create(study=study, output=gone, reason="broken", by=admin_user)
    study_index_clear()
    annotator = Annotator.objects.create()
    served = []
    while (a := task_next(study=study, annotator=annotator, ahead=0)[0]) is not None:
        served.append(a.output_left_id)
        Assignment.objects.filter(pk=a.pk).update(answered_at=timezone.now(), skipped=True)
    assert len(served) == Output.objects.count() - 1 and gone.pk not in served
