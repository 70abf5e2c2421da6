"""End to end: an upload through the API is imported and scored by real worker processes."""

import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from judging.models import OutputScore, ScoreJob
from tests.conftest import api_client_for, make_zip, sample_files
from tests.judging.test_scoring_pipeline import TINY, tiny_clip_files  # noqa: F401  (fixture)

pytestmark = pytest.mark.e2e


@pytest.fixture
def clip_env(monkeypatch, tiny_clip_files):  # noqa: F811
    config, checkpoint = tiny_clip_files
    monkeypatch.setenv("ARENA_CLIP_MODEL", TINY)
    monkeypatch.setenv("ARENA_CLIP_PRETRAINED", str(checkpoint))
    monkeypatch.setenv("ARENA_CLIP_MODEL_CONFIG", str(config))
    monkeypatch.setenv("ARENA_SCORERS", "clip")
    monkeypatch.setenv("ARENA_DEVICE", "cpu")


def test_an_uploaded_zip_is_scored_by_the_gpu_queue_worker_with_no_further_action(clip_env, celery_worker_process, admin_user, tmp_path):
    client = api_client_for(admin_user)
    path = make_zip(tmp_path / "outputs.zip", sample_files(n_generators=3, n_prompts=3))
    res = client.post("/api/uploads/", {"file": SimpleUploadedFile("outputs.zip", path.read_bytes())}, format="multipart")
    assert res.status_code == 202
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        jobs = client.get("/api/jobs/").json()
        if any(j["kind"] == "score" and j["status"] in ("done", "failed") for j in jobs):
            break
        time.sleep(0.3)
    score_job = next(j for j in jobs if j["kind"] == "score")
    assert score_job["status"] == "done", (score_job, celery_worker_process.log_path.read_text()[-3000:])
    assert score_job["done"] == score_job["total"] == 9 and score_job["items_per_second"] > 0
    assert OutputScore.objects.filter(scorer="clip").count() == 9
    assert ScoreJob.objects.filter(kind="score").count() == 1


@pytest.fixture
def cpu_scorers_env(monkeypatch):
    monkeypatch.setenv("ARENA_SCORERS", "ocr,nsfw,quality")


@pytest.mark.worker_queues("default", "cpu")
def test_a_site_without_a_gpu_worker_still_gets_text_safety_and_quality_scores(cpu_scorers_env, celery_worker_process, admin_user, tmp_path):
    # The worker consumes only the default and CPU queues: nothing here needs the GPU queue.
    from tests.judging.test_ocr_scorer import rendered

    files = {"sign.png": rendered("OPEN LATE"), "blank.png": rendered("")}
    rows = [{"generator": "typeset-xl", "prompt": 'a sign that says "OPEN LATE"', "image": "sign.png"},
            {"generator": "blank-gan", "prompt": 'a sign that says "OPEN LATE"', "image": "blank.png"}]
    from tests.conftest import manifest_jsonl

    files["manifest.jsonl"] = manifest_jsonl(rows)
    client = api_client_for(admin_user)
    path = make_zip(tmp_path / "signs.zip", files)
    assert client.post("/api/uploads/", {"file": SimpleUploadedFile("signs.zip", path.read_bytes())}, format="multipart").status_code == 202
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        jobs = [j for j in client.get("/api/jobs/").json() if j["kind"] == "score"]
        if len(jobs) == 3 and all(j["status"] in ("done", "failed") for j in jobs):
            break
        time.sleep(0.3)
    assert sorted((j["scorer"], j["status"]) for j in jobs) == [("nsfw", "done"), ("ocr", "done"), ("quality", "done")], (
        jobs, celery_worker_process.log_path.read_text()[-3000:])
    ocr = dict(OutputScore.objects.filter(scorer="ocr").values_list("output__generator__name", "value"))
    assert ocr["typeset-xl"] == 1.0 and ocr["blank-gan"] < 1.0
    blank = OutputScore.objects.get(scorer="ocr", output__generator__name="blank-gan")
    assert blank.details["reason"] == "no text found in the image"
