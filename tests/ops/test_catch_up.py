"""Nothing derived can wedge: with the broker down or a message lost, votes and uploads are
still accepted, and the work is queued again by the next vote, the next page view, the
workers' sweep or a staff re-run. Runs that died are taken over."""

from __future__ import annotations

from datetime import timedelta

import pytest
from celery.app.task import Task
from django.utils import timezone
from kombu.exceptions import OperationalError

from arena import derived
from arena.models import Annotator, Upload, Vote
from arena.storage import image_path
from arena.voting import vote_record
from tests.conftest import task_next
from arenasite.celery import app
from judging.models import ScoreJob
from ops.services import derivations_sweep, worker_beat_record
from ratings.models import EloState, LeaderboardResult, RecomputeState
from tests.arena.test_uploads_web_and_api import zip_upload
from tests.conftest import api_client_for, client_for

pytestmark = pytest.mark.django_db


class Broker:
    """`down()`: every publish fails as with Redis stopped; `lossy()`: messages are accepted and
    lost; `up()`: back to normal (tasks run in-process). `sent` lists what was published."""

    def __init__(self):
        self.original = Task.apply_async
        self.sent: list[tuple[str, tuple]] = []

    def down(self):
        def refuse(task, args=None, kwargs=None, **options):
            raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

        app.conf.task_always_eager = False
        Task.apply_async = refuse

    def lossy(self):
        def drop(task, args=None, kwargs=None, **options):
            self.sent.append((task.name, tuple(args or ())))

        app.conf.task_always_eager = False
        Task.apply_async = drop

    def up(self):
        Task.apply_async = self.original
        app.conf.task_always_eager = True
        derived.publish_backoff_clear()


@pytest.fixture
def broker():
    b = Broker()
    derived.publish_backoff_clear()
    yield b
    b.up()


def vote_over_api(study, user):
    client = api_client_for(user)
    task = client.get(f"/api/studies/{study.slug}/next-task/").json()["task"]
    return client.post(f"/api/studies/{study.slug}/votes/", {"assignment": task["assignment"], "answer": "left"}, format="json")


def age(model, **times):
    """Move a row's bookkeeping times an hour into the past (the stale bound is far shorter)."""
    past = timezone.now() - timedelta(hours=1)
    model.objects.update(**{name: past for name in times})


def test_a_vote_is_answered_201_with_the_broker_down_and_counted_once_it_is_back(
    make_study, annotator_user, broker, django_capture_on_commit_callbacks
):
    study = make_study(kinds=("pairwise",))
    broker.down()
    with django_capture_on_commit_callbacks(execute=True):
        res = vote_over_api(study, annotator_user)
    assert res.status_code == 201
    assert Vote.objects.count() == 1
    elo = EloState.objects.get(study=study)
    assert elo.requested_at is not None and elo.queued_at is None and elo.votes_applied == 0
    assert RecomputeState.objects.get(study=study).requested_at is not None
    broker.up()
    derivations_sweep()
    assert EloState.objects.get(study=study).votes_applied == 1
    assert LeaderboardResult.objects.get(study=study, category="").data["totals"]["pairwise"] == 1


def test_the_next_vote_queues_again_what_a_lost_message_left_behind(
    make_study, annotator_user, broker, django_capture_on_commit_callbacks
):
    study = make_study(kinds=("pairwise",), quota_per_annotator=50)
    broker.lossy()
    with django_capture_on_commit_callbacks(execute=True):
        vote_over_api(study, annotator_user)
        vote_over_api(study, annotator_user)
    assert [name for name, _ in broker.sent].count("ratings.elo_apply") == 1  # the second vote found it queued
    age(EloState, queued_at=True, requested_at=True)
    with django_capture_on_commit_callbacks(execute=True):
        vote_over_api(study, annotator_user)
    assert [name for name, _ in broker.sent].count("ratings.elo_apply") == 2  # the message was presumed lost


def test_a_page_view_queues_the_elo_and_recompute_a_lost_message_left_behind(
    make_study, annotator_user, researcher, broker, django_capture_on_commit_callbacks
):
    study = make_study(kinds=("pairwise",))
    broker.lossy()
    with django_capture_on_commit_callbacks(execute=True):
        vote_over_api(study, annotator_user)
    age(EloState, queued_at=True, requested_at=True)
    age(RecomputeState, queued_at=True, requested_at=True)
    broker.up()
    assert client_for(researcher).get(f"/leaderboard/{study.slug}/").status_code == 200
    page = client_for(researcher).get(f"/leaderboard/{study.slug}/").content.decode()
    assert EloState.objects.get(study=study).votes_applied == 1
    assert "1 pairwise votes applied" in page


def test_votes_whose_after_commit_hook_never_ran_are_found_by_the_sweep(make_study, broker):
    study = make_study(kinds=("pairwise",))
    annotator = Annotator.objects.create()
    a, _ = task_next(study=study, annotator=annotator, ahead=0)
    vote_record(study=a.study, assignment_id=a.pk, annotator=annotator, answer="right")  # on_commit never runs here
    assert not EloState.objects.filter(study=study).exists()
    assert derivations_sweep() >= 1
    assert EloState.objects.get(study=study).votes_applied == 1
    assert LeaderboardResult.objects.get(study=study, category="").data["totals"]["pairwise"] == 1


def test_recompute_now_queues_a_run_every_time_even_when_one_is_already_queued(
    make_study, researcher, broker, django_capture_on_commit_callbacks
):
    study = make_study(kinds=("pairwise",))
    broker.lossy()
    client = client_for(researcher)
    for _ in range(2):
        assert client.post(f"/leaderboard/{study.slug}/recompute/").status_code == 302
    assert [name for name, _ in broker.sent] == ["ratings.recompute", "ratings.recompute"]


def test_a_recompute_whose_worker_died_is_taken_over(make_study, broker):
    from ratings.services import study_recompute

    study = make_study(kinds=("pairwise",))
    RecomputeState.objects.create(study=study, running=True, started_at=timezone.now(), heartbeat_at=timezone.now())
    assert study_recompute(study_id=study.pk) is False  # a live run holds it
    age(RecomputeState, started_at=True, heartbeat_at=True)
    assert study_recompute(study_id=study.pk) is True
    state = RecomputeState.objects.get(study=study)
    assert not state.running and state.finished_at is not None


def test_the_sweep_runs_again_a_recompute_whose_worker_died_mid_run(make_study, broker):
    study = make_study(kinds=("pairwise",))
    annotator = Annotator.objects.create()
    a, _ = task_next(study=study, annotator=annotator, ahead=0)
    vote_record(study=a.study, assignment_id=a.pk, annotator=annotator, answer="left")
    elo_state = EloState.objects.create(study=study, criterion=study.criteria.get())
    Vote.objects.update(elo_applied=True)  # only the board is owed: its run died after claiming it
    EloState.objects.filter(pk=elo_state.pk).update(votes_applied=1)
    RecomputeState.objects.create(study=study, running=True, started_at=timezone.now(), heartbeat_at=timezone.now())
    age(RecomputeState, started_at=True, heartbeat_at=True)
    derivations_sweep()
    state = RecomputeState.objects.get(study=study)
    assert not state.running and state.requested_at is None and state.finished_at is not None
    assert LeaderboardResult.objects.get(study=study, category="").data["totals"]["pairwise"] == 1


def test_an_upload_posted_with_the_broker_down_gets_202_and_is_imported_once_it_is_back(
    admin_user, tmp_path, broker, django_capture_on_commit_callbacks
):
    broker.down()
    with django_capture_on_commit_callbacks(execute=True):
        res = api_client_for(admin_user).post("/api/uploads/", {"file": zip_upload(tmp_path)}, format="multipart")
    assert res.status_code == 202
    upload = Upload.objects.get(pk=res.data["id"])
    assert upload.status == Upload.Status.PENDING and upload.queued_at is None
    broker.up()
    derivations_sweep()
    upload.refresh_from_db()
    assert upload.status == Upload.Status.DONE and upload.rows_imported == 4


def test_an_import_whose_worker_died_runs_again_and_its_unfinished_files_are_removed(
    admin_user, tmp_path, broker, django_capture_on_commit_callbacks
):
    broker.lossy()
    with django_capture_on_commit_callbacks(execute=True):
        res = api_client_for(admin_user).post("/api/uploads/", {"file": zip_upload(tmp_path)}, format="multipart")
    orphan = ("ab" * 32, "png")  # written by the dead run, never committed
    path = image_path(*orphan)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"half an image")
    Upload.objects.filter(pk=res.data["id"]).update(status=Upload.Status.RUNNING, files_planned=[list(orphan)])
    age(Upload, started_at=True, heartbeat_at=True)
    broker.up()
    derivations_sweep()
    upload = Upload.objects.get(pk=res.data["id"])
    assert upload.status == Upload.Status.DONE and upload.rows_imported == 4
    assert not path.exists()
    assert upload.files_planned == []


def test_a_live_import_is_not_taken_over(admin_user, tmp_path, broker, django_capture_on_commit_callbacks):
    broker.lossy()
    with django_capture_on_commit_callbacks(execute=True):
        res = api_client_for(admin_user).post("/api/uploads/", {"file": zip_upload(tmp_path)}, format="multipart")
    Upload.objects.filter(pk=res.data["id"]).update(status=Upload.Status.RUNNING, heartbeat_at=timezone.now())
    broker.up()
    derivations_sweep()
    assert Upload.objects.get(pk=res.data["id"]).status == Upload.Status.RUNNING


def test_a_scoring_job_whose_worker_died_is_queued_again_from_the_start(broker):
    job = ScoreJob.objects.create(kind=ScoreJob.Kind.SCORE, scorer="clip", output_ids=[1, 2], total=2, done=1,
                                  status=ScoreJob.Status.RUNNING)
    age(ScoreJob, started_at=True, heartbeat_at=True)
    broker.lossy()
    derivations_sweep()
    job.refresh_from_db()
    assert job.status == ScoreJob.Status.PENDING and job.done == 0 and job.attempts == 1
    assert "stopped" in job.errors[-1]["error"]
    assert broker.sent == [("judging.score_outputs", (job.pk,))]


def test_a_pending_job_in_a_long_queue_is_queued_again_at_growing_intervals(broker, settings):
    settings.ARENA_DERIVATION_STALE_SECONDS = 30
    now = timezone.now()
    created = now - timedelta(hours=2)
    # Waited an hour before its last message; that message is 40 minutes old: not yet due.
    assert not derived.dispatch_due(requested_at=created, queued_at=created + timedelta(hours=1), now=now - timedelta(minutes=20))
    assert derived.dispatch_due(requested_at=created, queued_at=created + timedelta(minutes=1), now=now)
    assert derived.dispatch_due(requested_at=created, queued_at=None, now=now)
    assert not derived.dispatch_due(requested_at=now, queued_at=now + timedelta(seconds=1), now=now + timedelta(seconds=20))


def test_health_reports_database_broker_workers_and_the_oldest_pending_derivation(make_study, admin_user, broker):
    study = make_study(kinds=("pairwise",))
    worker_beat_record(hostname="default@box", queues=["default"], pid=42, started_at=timezone.now(), swept=0)
    broker.lossy()
    annotator = Annotator.objects.create()
    a, _ = task_next(study=study, annotator=annotator, ahead=0)
    vote_record(study=a.study, assignment_id=a.pk, annotator=annotator, answer="left")  # its hook never runs
    Vote.objects.update(created_at=timezone.now() - timedelta(minutes=5))
    res = api_client_for(admin_user).get("/api/health/")
    assert res.status_code == 200
    body = res.json()
    assert body["database"] == "ok" and body["status"] == "degraded"
    assert [w["hostname"] for w in body["workers"]] == ["default@box"]
    assert body["pending"][0]["kind"] == "elo" and body["pending"][0]["stuck"]
    assert body["oldest_pending_seconds"] >= 300
    page = client_for(admin_user).get("/staff/jobs/").content.decode()
    assert "default@box" in page and f"online Elo of {study.slug}" in page and "stuck" in page


def test_health_says_the_broker_is_down_while_votes_can_still_be_taken(admin_user, monkeypatch):
    from ops import selectors

    monkeypatch.setattr(app.conf, "broker_write_url", "redis://127.0.0.1:1/0")
    monkeypatch.setattr(app, "_pool", None)
    assert selectors.broker_check() != "ok"
    body = api_client_for(admin_user).get("/api/health/").json()
    assert body["database"] == "ok" and body["broker"] != "ok" and body["status"] == "degraded"
    assert client_for(None).get("/healthz").status_code == 200  # load balancers keep sending votes


@pytest.mark.parametrize("persona,expected", [("admin", 200), ("researcher", 403), ("annotator", 403), ("outsider", 403), ("anonymous", 401)])
def test_only_staff_read_the_health_api(personas, persona, expected):
    assert api_client_for(personas[persona]).get("/api/health/").status_code == expected


@pytest.mark.parametrize("persona,expected", [("admin", 302), ("researcher", 403), ("annotator", 403), ("outsider", 403), ("anonymous", 302)])
def test_only_staff_can_re_run_a_derivation(personas, persona, expected, make_study, broker):
    study = make_study(kinds=("pairwise",))
    broker.lossy()
    res = client_for(personas[persona]).post("/staff/jobs/rerun/", {"what": "recompute", "id": study.pk})
    assert res.status_code == expected
    assert bool(broker.sent) == (persona == "admin")


def test_the_staff_jobs_page_shows_a_stuck_recompute_and_re_runs_it(make_study, admin_user, broker):
    study = make_study(kinds=("pairwise",))
    RecomputeState.objects.create(study=study, requested_at=timezone.now(), queued_at=timezone.now())
    age(RecomputeState, requested_at=True, queued_at=True)
    client = client_for(admin_user)
    page = client.get("/staff/jobs/").content.decode()
    assert f"full recompute of {study.slug}" in page and "stuck" in page and "Re-run" in page
    broker.up()
    res = client.post("/staff/jobs/rerun/", {"what": "recompute", "id": study.pk}, follow=True)
    assert res.status_code == 200
    state = RecomputeState.objects.get(study=study)
    assert state.requested_at is None and state.finished_at is not None
    assert "Nothing owed" in client.get("/staff/jobs/").content.decode()


def test_after_the_broker_comes_back_owed_work_is_queued_again_without_waiting_out_the_stale_bound(
    make_study, annotator_user, broker, django_capture_on_commit_callbacks
):
    from ops.services import worker_tick

    study = make_study(kinds=("pairwise",))
    broker.lossy()
    with django_capture_on_commit_callbacks(execute=True):
        vote_over_api(study, annotator_user)  # its messages are then wiped with a restarted Redis
    sent = len(broker.sent)
    tick = {"hostname": "default@box", "queues": ["default"], "pid": 1, "started_at": timezone.now(), "sweep": True}
    worker_tick(**tick)
    assert len(broker.sent) == sent  # fresh messages are trusted...
    worker_tick(**tick, broker_reconnected=True)
    assert sorted(name for name, _ in broker.sent[sent:]) == ["ratings.elo_apply", "ratings.recompute"]  # ...not after a reconnect
