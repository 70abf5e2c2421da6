"""Uploads lead to automated scores and metric columns on the board, with a tiny CLIP model
loaded through the real configuration path (model config + local checkpoint)."""

import json

import numpy as np
import pytest
import torch

from arena.imports import outputs_import
from arena.models import Annotator, Output, Vote
from arena.services import outputs_imported
from arena.voting import vote_record
from tests.conftest import task_next
from judging.models import Embedding, GeneratorMetric, OutputScore, ScoreJob
from judging.scorers import clear_scorer_cache
from judging.selectors import metrics_for_board
from ratings.selectors import leaderboard_get
from ratings.services import study_recompute
from tests.conftest import GENERATOR_NAMES, make_zip, manifest_jsonl, png_bytes

pytestmark = pytest.mark.django_db

TINY = "arena-pipeline-tiny-clip"
TINY_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="session")
def tiny_clip_files(tmp_path_factory):
    import open_clip

    folder = tmp_path_factory.mktemp("tiny_clip")
    config = folder / f"{TINY}.json"
    config.write_text(json.dumps(TINY_CONFIG))
    open_clip.add_model_config(config)
    torch.manual_seed(3)
    model = open_clip.create_model(TINY, pretrained=None)
    checkpoint = folder / "tiny-clip.pt"
    torch.save(model.state_dict(), checkpoint)
    return config, checkpoint


@pytest.fixture
def clip_settings(settings, tiny_clip_files):
    config, checkpoint = tiny_clip_files
    settings.ARENA_CLIP_MODEL = TINY
    settings.ARENA_CLIP_PRETRAINED = str(checkpoint)
    settings.ARENA_CLIP_MODEL_CONFIG = str(config)
    settings.ARENA_SCORERS = ["clip"]
    settings.ARENA_DEVICE = "cpu"
    clear_scorer_cache()
    yield settings
    clear_scorer_cache()


def reference_model(checkpoint):
    import open_clip

    model = open_clip.create_model(TINY, pretrained=str(checkpoint)).eval()
    return model, open_clip.get_tokenizer(TINY)


def upload(tmp_path, study=None, seeds=2):
    rows, files = [], {}
    for g, gen in enumerate(GENERATOR_NAMES):
        for p in range(3):
            for seed in range(seeds):
                name = f"{g}-{p}-{seed}.png"
                files[name] = png_bytes(color=(40 * g + 10 * seed, 60 * p, 90 + 30 * seed), size=(40, 40))
                rows.append({"generator": gen, "prompt": f"a scene number {p}", "image": name, "seed": seed})
    files["manifest.jsonl"] = manifest_jsonl(rows)
    report = outputs_import(path=make_zip(tmp_path / "u.zip", files), study=study)
    return report


def test_an_upload_is_scored_with_clip_score_as_documented(clip_settings, tmp_path, django_capture_on_commit_callbacks, make_study):
    study = make_study(kinds=("pairwise",), prompts=1)
    report = upload(tmp_path, study=study)
    with django_capture_on_commit_callbacks(execute=True):
        outputs_imported(output_ids=report.output_ids)
    job = ScoreJob.objects.get(kind="score")
    assert job.status == "done" and job.done == job.total == len(report.output_ids)
    model, tok = reference_model(clip_settings.ARENA_CLIP_PRETRAINED)
    import open_clip
    from PIL import Image

    pre = open_clip.image_transform(TINY_CONFIG["vision_cfg"]["image_size"], is_train=False)
    for out in Output.objects.filter(pk__in=report.output_ids[:5]).select_related("image", "prompt"):
        with torch.no_grad():
            img = model.encode_image(pre(Image.open(clip_settings.MEDIA_ROOT / out.image.relative_path).convert("RGB"))[None])
            txt = model.encode_text(tok([out.prompt.text]))
        cos = torch.nn.functional.cosine_similarity(img, txt).item()
        score = OutputScore.objects.get(output=out, scorer="clip")
        assert score.value == pytest.approx(100 * max(cos, 0.0), abs=1e-3)
    assert Embedding.objects.count() == len(report.output_ids)


def test_rescoring_uses_the_cached_embeddings(clip_settings, tmp_path, django_capture_on_commit_callbacks, monkeypatch):
    report = upload(tmp_path)
    with django_capture_on_commit_callbacks(execute=True):
        outputs_imported(output_ids=report.output_ids)
    OutputScore.objects.all().delete()
    from judging.scorers.clip import ClipScorer

    calls = []
    monkeypatch.setattr(ClipScorer, "embed_images", lambda self, images, **k: calls.append(len(images)) or np.zeros((0, 16)))
    with django_capture_on_commit_callbacks(execute=True):
        outputs_imported(output_ids=report.output_ids)
    assert calls == []
    assert OutputScore.objects.count() == len(report.output_ids)


def test_generator_metrics_follow_the_scores(clip_settings, tmp_path, django_capture_on_commit_callbacks, make_study):
    study = make_study(kinds=("pairwise",), prompts=1)
    report = upload(tmp_path, study=study)
    with django_capture_on_commit_callbacks(execute=True):
        outputs_imported(output_ids=report.output_ids)
    for name in GENERATOR_NAMES:
        outs = Output.objects.filter(generator__name=name, pk__in=report.output_ids)
        mean = np.mean([OutputScore.objects.get(output=o).value for o in outs])
        assert GeneratorMetric.objects.get(generator__name=name, metric="clip_score", study=study).value == pytest.approx(mean)
        # diversity: mean over prompts of the mean pairwise cosine distance between the two seeds
        dists = []
        for p in range(3):
            vecs = [np.frombuffer(bytes(Embedding.objects.get(image=o.image).vector), dtype=np.float32)
                    for o in outs.filter(prompt__text=f"a scene number {p}")]
            a, b = vecs
            dists.append(1 - float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b)))
        assert GeneratorMetric.objects.get(generator__name=name, metric="diversity").value == pytest.approx(np.mean(dists), abs=1e-5)


def test_missing_weights_fail_the_job_with_the_setting_named(settings, tmp_path, django_capture_on_commit_callbacks, tiny_clip_files):
    config, _ = tiny_clip_files
    settings.ARENA_CLIP_MODEL = TINY
    settings.ARENA_CLIP_MODEL_CONFIG = str(config)
    settings.ARENA_CLIP_PRETRAINED = str(tmp_path / "nowhere" / "clip.pt")
    settings.ARENA_SCORERS = ["clip"]
    clear_scorer_cache()
    report = upload(tmp_path)
    with django_capture_on_commit_callbacks(execute=True):
        outputs_imported(output_ids=report.output_ids)
    job = ScoreJob.objects.get()
    assert job.status == "failed"
    assert "ARENA_CLIP_PRETRAINED" in job.message and "nowhere/clip.pt" in job.message
    assert OutputScore.objects.count() == 0


def test_the_board_shows_metric_columns_and_their_agreement_with_people(make_study, researcher, settings):
    from judging.services import generator_metrics_run, model_id_for

    study = make_study(kinds=("pairwise",), prompts=6, quota_per_annotator=500)
    rng = np.random.default_rng(5)
    for out in Output.objects.all():
        OutputScore.objects.create(output=out, scorer="clip", model_id=model_id_for("clip"), value=float(rng.uniform(10, 40)))
    job = ScoreJob.objects.create(kind="metrics", scorer="clip", study=study)
    generator_metrics_run(job=job)
    scores = dict(OutputScore.objects.values_list("output_id", "value"))
    annotators = [Annotator.objects.create() for _ in range(4)]
    for k in range(60):
        a, _ = task_next(study=study, annotator=annotators[k % 4], ahead=0)
        # people prefer the output with the higher CLIP score two times out of three
        better = "left" if scores[a.output_left_id] >= scores[a.output_right_id] else "right"
        worse = "right" if better == "left" else "left"
        vote_record(study=a.study, assignment_id=a.pk, annotator=annotators[k % 4], answer=better if k % 3 else worse)
    study_recompute(study_id=study.pk)
    board = leaderboard_get(study=study, criterion=study.criteria.first())
    metrics = metrics_for_board(study=study, board=board)
    assert metrics["columns"][0]["key"] == "clip_score"
    clip = next(a for a in metrics["agreement"] if a["metric"] == "clip_score")
    decisive = [(v.choice, scores[v.output_left_id], scores[v.output_right_id]) for v in Vote.objects.filter(choice__in=["left", "right"])]
    # Every vote here is decisive, so the tie-calibrated accuracy is the share the metric orders the same way.
    expected = sum((c == "left") == (sl > sr) for c, sl, sr in decisive) / len(decisive)
    acc = clip["per_output"]["pairwise_accuracy"]
    assert acc["value"] == pytest.approx(expected) and acc["n"] == len(decisive)
    means = {g: np.mean([scores[o.pk] for o in Output.objects.filter(generator__name=g)]) for g in GENERATOR_NAMES}
    bt = {r["name"]: r["bt"] for r in board["generators"]}
    from scipy.stats import spearmanr

    rho = clip["per_generator"]["spearman"]
    assert rho["value"] == pytest.approx(spearmanr([means[g] for g in GENERATOR_NAMES], [bt[g] for g in GENERATOR_NAMES]).statistic)
    from tests.conftest import client_for

    page = client_for(researcher).get(f"/leaderboard/{study.slug}/").content.decode()
    assert "CLIP score" in page and "100 · max(cos(image, prompt), 0)" in page and "Pairwise accuracy" in page
    assert f"{means['narwhal-gan']:.2f}" in page


@pytest.mark.parametrize(
    "persona,expected", [("admin", 200), ("researcher", 403), ("annotator", 403), ("outsider", 403), ("anonymous", 302)]
)
def test_only_staff_see_the_jobs_page(personas, persona, expected):
    from tests.conftest import client_for

    assert client_for(personas[persona]).get("/staff/jobs/").status_code == expected


@pytest.mark.parametrize(
    "persona,expected", [("admin", 200), ("researcher", 403), ("annotator", 403), ("outsider", 403), ("anonymous", 401)]
)
def test_only_staff_read_jobs_over_the_api(personas, persona, expected):
    from tests.conftest import api_client_for

    job = ScoreJob.objects.create(kind="score", scorer="clip", total=3)
    assert api_client_for(personas[persona]).get("/api/jobs/").status_code == expected
    assert api_client_for(personas[persona]).get(f"/api/jobs/{job.pk}/").status_code == expected


def test_decomposed_questions_show_which_property_failed(make_study, researcher):
    from judging.services import generator_metrics_run, model_id_for
    from tests.conftest import client_for

    study = make_study(kinds=("pairwise",), prompts=2)
    for out in Output.objects.select_related("generator"):
        says_red = out.generator.name != "narwhal-gan"
        OutputScore.objects.create(
            output=out, scorer="vqa", model_id=model_id_for("vqa"), value=0.7,
            details={"questions": [{"question": "Is there a cube?", "p_yes": 0.9},
                                   {"question": "Is the cube red?", "p_yes": 0.8 if says_red else 0.2}], "yes_share": 1.0},
        )
    generator_metrics_run(job=ScoreJob.objects.create(kind="metrics", scorer="vqa", study=study))
    narwhal = GeneratorMetric.objects.get(generator__name="narwhal-gan", metric="vqascore")
    assert narwhal.details["questions"]["Is the cube red?"] == {"yes_share": 0.0, "n": 2}
    assert narwhal.details["questions"]["Is there a cube?"] == {"yes_share": 1.0, "n": 2}
    for k in range(8):
        a, _ = task_next(study=study, annotator=Annotator.objects.create(), ahead=0)
        vote_record(study=a.study, assignment_id=a.pk, annotator=a.annotator, answer="left")
    study_recompute(study_id=study.pk)
    page = client_for(researcher).get(f"/leaderboard/{study.slug}/").content.decode()
    assert "Decomposed questions" in page and "Is the cube red?" in page
