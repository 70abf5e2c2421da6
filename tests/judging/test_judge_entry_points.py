"""Starting judge runs: the command, the API, the staff pages; rubrics in the study setup; refusals."""

import json

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command

from judging import judge_backends
from judging.judge_conf import judges_configured
from judging.judge_prompts import parse_verdict, rubric_scale, RubricError
from judging.models import JudgeRubric, JudgeRun, JudgeVote
from tests.conftest import api_client_for, client_for
from tests.judging.judge_server import JudgeServer
from tests.judging.test_judges_http import configure, fair

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch):
    monkeypatch.setattr(judge_backends, "BACKOFF_SECONDS", 0.01)


@pytest.fixture
def study(make_study):
    return make_study(prompts=1, generators=["zebrafusion-xl", "quokka-diffusion"], kinds=("pairwise", "likert"))


@pytest.mark.django_db(transaction=True)  # the run is queued when the command's transaction commits
def test_the_command_queues_a_run_prints_progress_and_resumes(settings, study, capsys):
    with JudgeServer(fair, model="fair-vl") as server:
        configure(settings, {"name": "fair", "url": server.url, "model": "fair-vl"})
        call_command("judge_study", study.slug, "--judge", "fair", "--sample", "1")
        out = capsys.readouterr().out
        assert "a sample of 1 task(s)" in out and "done: 1/1 task(s)" in out and "1 task(s) judged by fair" in out
        call_command("judge_study", study.slug, "--judge", "fair")
        out = capsys.readouterr().out
        # 1 pair + 2 ratings; the sampled task is not asked again.
        assert "done: 3/3 task(s)" in out and "2 task(s) judged by fair" in out
    assert JudgeVote.objects.count() == 3 and len(server.calls) == 2 + 2


def test_the_command_refuses_without_a_judge_and_names_the_settings(settings, study):
    configure(settings)
    with pytest.raises(CommandError, match="No judge is configured: set ARENA_JUDGE_URL and ARENA_JUDGE_MODEL"):
        call_command("judge_study", study.slug, "--judge", "any")
    settings.ARENA_JUDGE_MODEL = "/srv/models/qwen"
    with pytest.raises(CommandError, match="No judge named 'other'; configured: judge"):
        call_command("judge_study", study.slug, "--judge", "other")
    with pytest.raises(CommandError, match="No study 'nope'"):
        call_command("judge_study", "nope", "--judge", "judge")
    assert JudgeRun.objects.count() == 0


@pytest.mark.parametrize("value, message", [
    ([{"name": "a", "backend": "http", "model": "m"}], "ARENA_JUDGES[0]: url must be an http(s) URL"),
    ([{"name": "a", "backend": "gpt", "model": "m"}], 'ARENA_JUDGES[0].backend must be "http" or "transformers"'),
    ([{"name": "a", "url": "http://x/v1"}], "ARENA_JUDGES[0]: no model"),
    ([{"name": "a", "url": "http://x/v1", "model": "m", "timeout": "5"}], "ARENA_JUDGES[0].timeout must be an integer"),
    ([{"name": "a", "model": "m"}, {"name": "a", "model": "n"}], "ARENA_JUDGES[1]: a judge named 'a' is configured twice"),
    ([{"name": "a", "model": "m", "key": "x"}], "ARENA_JUDGES[0] has unknown key(s) key"),
])
def test_a_bad_judge_setting_is_refused_naming_it(settings, value, message):
    configure(settings, *value)
    with pytest.raises(ImproperlyConfigured) as exc:
        judges_configured()
    assert message in str(exc.value)


def test_a_url_without_a_model_name_is_refused(settings):
    configure(settings)
    settings.ARENA_JUDGE_URL = "http://gpu:8000/v1"
    with pytest.raises(ImproperlyConfigured, match="ARENA_JUDGE_URL is set but ARENA_JUDGE_MODEL"):
        judges_configured()


def test_the_api_starts_a_run_for_staff_only_and_reports_progress(settings, study, personas, django_capture_on_commit_callbacks):
    with JudgeServer(fair, model="fair-vl") as server:
        configure(settings, {"name": "fair", "url": server.url, "model": "fair-vl"})
        for who in ("researcher", "annotator", "outsider", "anonymous"):
            res = api_client_for(personas[who]).post(f"/api/studies/{study.slug}/judge-runs/", {"judge": "fair"}, format="json")
            assert res.status_code in (401, 403), who
        admin = api_client_for(personas["admin"])
        assert admin.post(f"/api/studies/{study.slug}/judge-runs/", {"judge": "nobody"}, format="json").json()["detail"].startswith("No judge named 'nobody'")
        with django_capture_on_commit_callbacks(execute=True):
            res = admin.post(f"/api/studies/{study.slug}/judge-runs/", {"judge": "fair", "sample": 2}, format="json")
        assert res.status_code == 202
        run = admin.get(res.headers["Location"]).json()
        assert run["status"] == "done" and run["done"] == run["total"] == 2 and run["verdicts"] == 2
        assert run["requests"] == len(server.calls) and run["prompt_tokens"] > 0 and "api_key" not in json.dumps(run)
        assert [r["id"] for r in admin.get(f"/api/studies/{study.slug}/judge-runs/").json()] == [run["id"]]
    assert api_client_for(personas["researcher"]).get(res.headers["Location"]).status_code == 403
    schema = api_client_for(personas["admin"]).get("/api/schema/?format=json").json()
    assert "/api/studies/{slug}/judge-runs/" in schema["paths"] and "/api/judge-runs/{id}/" in schema["paths"]


def test_staff_start_a_run_from_the_jobs_page_and_see_its_figures(settings, study, admin_user, researcher, django_capture_on_commit_callbacks):
    with JudgeServer(fair, model="fair-vl") as server:
        configure(settings, {"name": "fair", "url": server.url, "model": "fair-vl"})
        staff = client_for(admin_user)
        page = staff.get("/staff/jobs/").content.decode()
        assert 'id="judge-start"' in page and "fair (fair-vl, http)" in page
        with django_capture_on_commit_callbacks(execute=True):
            res = staff.post("/staff/judges/run/", {"study": study.slug, "judge": "fair", "sample": ""})
        assert res.status_code == 302
        page = staff.get("/staff/jobs/").content.decode()
    run = JudgeRun.objects.get()
    assert f'data-judge-run="{run.pk}"' in page and "Done" in page and f"{run.prompt_tokens} + {run.completion_tokens}" in page
    assert client_for(researcher).post("/staff/judges/run/", {"study": study.slug, "judge": "fair"}).status_code in (302, 403)
    assert JudgeRun.objects.count() == 1


def test_rubrics_are_edited_in_the_study_setup_and_one_without_a_score_range_is_refused(settings, study, admin_user, researcher):
    configure(settings)
    staff = client_for(admin_user)
    setup = staff.get(f"/staff/studies/{study.slug}/edit/").content.decode()
    assert f"/staff/studies/{study.slug}/judges/" in setup
    page = staff.get(f"/staff/studies/{study.slug}/judges/").content.decode()
    criterion = study.criteria.get()
    assert "perceptual quality and aesthetics" in page and "1: severely distorted" in page
    res = staff.post(f"/staff/studies/{study.slug}/judges/", {f"rubric-{criterion.pk}": "Is it pretty? Score it."})
    assert res.status_code == 400
    assert "has no score range" in res.content.decode() and JudgeRubric.objects.count() == 0
    good = "Look at colour only.\n1: dull\n5: vivid"
    assert staff.post(f"/staff/studies/{study.slug}/judges/", {f"rubric-{criterion.pk}": good}).status_code == 302
    assert JudgeRubric.objects.get().text == good
    assert client_for(researcher).get(f"/staff/studies/{study.slug}/judges/").status_code in (302, 403)


def test_a_stored_rubric_without_a_score_range_refuses_the_run(settings, study):
    JudgeRubric.objects.create(study=study, criterion=study.criteria.get(), text="Pretty or not.")
    configure(settings, {"name": "fair", "url": "http://127.0.0.1:9/v1", "model": "m"})
    with pytest.raises(CommandError, match="rubric of criterion 'Aesthetics' has no score range"):
        call_command("judge_study", study.slug, "--judge", "fair")
    assert JudgeRun.objects.count() == 0


def test_answers_are_read_from_the_last_json_object_and_never_guessed():
    assert parse_verdict("likert", 'Reasoning {"note": 1} ... {"score": 4}').value == 4
    assert parse_verdict("likert", '{"score": "5"}').value == 5
    assert parse_verdict("likert", '{"score": 7}') is None
    assert parse_verdict("likert", "I'd give it a 4.") is None
    assert parse_verdict("pairwise", 'so {"choice": "Second"}').value == "second"
    assert parse_verdict("binary", '{"verdict": "meh"}') is None
    assert parse_verdict("question", 'x {"answer": "no"}').value == 0
    assert rubric_scale("a\n1: bad\n2: so-so\n5 - great") == (1, 5)
    with pytest.raises(RubricError):
        rubric_scale("1: bad only")


def test_a_second_run_of_the_same_judge_is_refused_while_one_is_queued(settings, study):
    from judging.judge_runs import JudgeRunRefused, judge_run_enqueue

    configure(settings, {"name": "fair", "url": "http://127.0.0.1:9/v1", "model": "m"})
    first = judge_run_enqueue(study=study, judge="fair")  # queued when the test's transaction commits: never here
    with pytest.raises(JudgeRunRefused, match=f"Judge run {first.pk} of this judge on {study.slug} is already queued"):
        judge_run_enqueue(study=study, judge="fair")
    assert JudgeRun.objects.count() == 1


def test_an_oversized_sample_or_rubric_is_refused_and_nothing_is_stored(settings, study, admin_user):
    configure(settings, {"name": "fair", "url": "http://127.0.0.1:9/v1", "model": "fair-vl"})
    admin = api_client_for(admin_user)
    res = admin.post(f"/api/studies/{study.slug}/judge-runs/", {"judge": "fair", "sample": 9223372036854775808}, format="json")
    assert res.status_code == 400 and "sample" in res.json()
    staff = client_for(admin_user)
    res = staff.post(f"/staff/studies/{study.slug}/judges/run/", {"judge": "fair", "sample": "99999999999999999999999"}, follow=True)
    assert res.status_code == 200 and "the sample must be a number of tasks from 1 to 1,000,000" in res.content.decode()
    assert JudgeRun.objects.count() == 0
    criterion = study.criteria.get()
    huge = "1: dull\n5: vivid\n" + "x" * 2_000_000
    res = staff.post(f"/staff/studies/{study.slug}/judges/", {f"rubric-{criterion.pk}": huge})
    assert res.status_code == 400 and "at most 8,000" in res.content.decode()
    assert len(res.content) < 100_000 and JudgeRubric.objects.count() == 0
