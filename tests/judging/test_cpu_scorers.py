"""Safety screening with the real NudeNet model, technical quality from pixels, and the
screen keeping unsafe outputs from annotators until staff release them."""

import io

import numpy as np
import pytest
from django.utils import timezone
from PIL import Image

from arena.models import Annotator, Assignment, Flag, Output
from arena.voting import study_index_clear
from tests.conftest import task_next
from judging.models import OutputScore
from judging.scorers import ModelUnavailable, ScoreItem, scorer_class
from judging.scorers.nsfw import NsfwScorer
from judging.scorers.quality import QualityScorer, blockiness, noise_sigma, quality_measures, sharpness
from judging.screening import outputs_release, outputs_withheld

PHOTOS = ["astronaut", "chelsea", "coffee", "rocket", "camera", "immunohistochemistry", "hubble_deep_field"]


def photo_png(name: str) -> bytes:
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(getattr(data, name)()).convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


# -- safety -------------------------------------------------------------------------------


def test_nudenet_flags_none_of_the_real_photos_and_reports_what_it_saw():
    scorer = NsfwScorer().load()
    results = scorer.score_batch([ScoreItem(image=io.BytesIO(photo_png(n))) for n in PHOTOS])
    assert len(results) == len(PHOTOS)
    assert all(r.score < 0.5 for r in results), [(n, r.detections) for n, r in zip(PHOTOS, results)]
    astronaut = results[0]
    assert "FACE_FEMALE" in astronaut.labels  # the detector does see a person there
    value, details = NsfwScorer.record(astronaut, ScoreItem(image=None))
    assert value == astronaut.score and details["labels"] == astronaut.labels


def test_the_nsfw_model_matches_nudenets_own_detector_on_a_file(tmp_path):
    from nudenet import NudeDetector

    path = tmp_path / "astronaut.png"
    path.write_bytes(photo_png("astronaut"))
    theirs = NudeDetector().detect(str(path))
    ours = NsfwScorer().load().detect(str(path))
    assert [(d["class"], round(d["score"], 5)) for d in ours] == [(d["class"], round(d["score"], 5)) for d in theirs]


def test_a_missing_nsfw_model_or_an_unknown_provider_is_a_clear_error(tmp_path):
    with pytest.raises(ModelUnavailable, match="NudeNet detector model file .* is missing"):
        NsfwScorer(model_path=str(tmp_path / "320n.onnx")).load()
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelUnavailable, match="could not be loaded"):
        NsfwScorer(model_path=str(tmp_path / "bad.onnx")).load()
    with pytest.raises(ModelUnavailable, match="is not available here"):
        NsfwScorer(provider="CUDAExecutionProvider").load()


# -- technical quality ------------------------------------------------------------------


def gray(seed=0, size=(128, 160)):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[: size[0], : size[1]]
    return 128 + 60 * np.sin(x / 7.0) * np.cos(y / 9.0) + rng.normal(0, 1, size)


def test_sharpness_is_the_variance_of_the_laplacian_and_drops_with_blur():
    from scipy import ndimage

    img = gray()
    ref = ndimage.laplace(img)[1:-1, 1:-1].var()
    assert sharpness(img) == pytest.approx(ref)
    assert sharpness(ndimage.gaussian_filter(img, 2)) < sharpness(img) / 4


def test_the_noise_estimate_recovers_added_gaussian_noise():
    flat = np.full((200, 200), 120.0)
    for sigma in (3.0, 10.0):
        noisy = flat + np.random.default_rng(1).normal(0, sigma, flat.shape)
        assert noise_sigma(noisy) == pytest.approx(sigma, rel=0.05)
    assert noise_sigma(flat) == 0.0


def test_jpeg_at_low_quality_is_blockier_than_the_lossless_image():
    from skimage import data

    rgb = data.astronaut()
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=8)
    lossy = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L"), dtype=float)
    clean = np.asarray(Image.fromarray(rgb).convert("L"), dtype=float)
    assert blockiness(lossy) > 1.3 > blockiness(clean) > 0.8


def test_clipped_highlights_and_shadows_and_resolution():
    img = np.full((100, 200, 3), 128, dtype=np.uint8)
    img[:50] = 0          # half the pixels crushed black
    img[50:75] = 255      # a quarter blown white
    m = quality_measures(img)
    assert m["clipped_shadows"] == 0.5 and m["clipped_highlights"] == 0.25 and m["clipped"] == 0.75
    assert m["megapixels"] == pytest.approx(0.02)
    [r] = QualityScorer().load().score_batch([ScoreItem(image=Image.fromarray(img))])
    value, details = QualityScorer.record(r, ScoreItem(image=None))
    assert value == r["sharpness"] and details["measures"]["clipped"] == 0.75


def test_scorers_declare_what_they_produce_and_where_they_run(settings):
    from judging.services import scorer_queue

    settings.ARENA_GPU_QUEUE, settings.ARENA_CPU_QUEUE = "gpu-q", "cpu-q"
    for name in ("ocr", "nsfw", "quality"):
        assert scorer_class(name).needs_gpu is False and scorer_queue(name) == "cpu-q"
    for name in ("clip", "vqa", "fid"):
        assert scorer_class(name).needs_gpu is True and scorer_queue(name) == "gpu-q"
    ocr = scorer_class("ocr")
    assert [m.name for m in ocr.measures] == ["text_score", "edit_distance", "completion_rate", "word_accuracy"]
    assert ocr.measures[1].direction == "lower" and ocr.measures[0].range == (0.0, 1.0)
    assert scorer_class("nsfw").metrics[0].direction == "lower"


# -- screening ----------------------------------------------------------------------------


pytestmark_db = pytest.mark.django_db


def served_outputs(study, annotators=30, per=12):
    seen = set()
    for _ in range(annotators):
        ann = Annotator.objects.create()
        for _ in range(per):
            a, _ = task_next(study=study, annotator=ann, ahead=0)
            if a is None:
                break
            seen.add(a.output_left_id)
            if a.output_right_id:
                seen.add(a.output_right_id)
            # Skipped (answered without a vote), so the next call serves another item.
            Assignment.objects.filter(pk=a.pk).update(skipped=True, answered_at=timezone.now())
    return seen


@pytest.mark.django_db
def test_outputs_above_the_threshold_never_reach_annotators_until_staff_release_them(make_study, admin_user):
    study = make_study(kinds=("likert",), prompts=2, overlap_target=50, quota_per_annotator=50)
    outputs = list(Output.objects.order_by("pk"))
    unsafe, borderline = outputs[0], outputs[1]
    for o in outputs:
        value = 0.91 if o == unsafe else (0.49 if o == borderline else 0.0)
        OutputScore.objects.create(output=o, scorer="nsfw", model_id="nudenet:320n", value=value)
    study_index_clear()
    assert outputs_withheld(study=study) == {unsafe.pk}
    seen = served_outputs(study)
    assert unsafe.pk not in seen and borderline.pk in seen and len(seen) == len(outputs) - 1

    assert outputs_release(output_ids=[unsafe.pk], user=admin_user) == 1
    study_index_clear()
    assert outputs_withheld(study=study) == set()
    assert unsafe.pk in served_outputs(study)


@pytest.mark.django_db
def test_a_study_that_does_not_screen_serves_every_output(make_study):
    study = make_study(kinds=("likert",), prompts=1, overlap_target=50, quota_per_annotator=50, screen_before_annotators=False)
    flagged = Output.objects.first()
    OutputScore.objects.create(output=flagged, scorer="nsfw", model_id="nudenet:320n", value=0.99)
    study_index_clear()
    assert flagged.pk in served_outputs(study)


@pytest.mark.django_db
def test_staff_release_withheld_outputs_from_the_admin_review(make_study, admin_user):
    from tests.conftest import client_for

    study = make_study(kinds=("likert",), prompts=1)
    out = Output.objects.first()
    score = OutputScore.objects.create(output=out, scorer="nsfw", model_id="nudenet:320n", value=0.8,
                                       details={"labels": ["BUTTOCKS_EXPOSED"]})
    client = client_for(admin_user)
    page = client.get("/admin/judging/safetyscreen/").content.decode()
    assert "BUTTOCKS_EXPOSED" in page
    res = client.post("/admin/judging/safetyscreen/", {"action": "release", "_selected_action": [score.pk]}, follow=True)
    assert "1 output(s) released to annotators" in res.content.decode()
    assert outputs_withheld(study=study) == set()


@pytest.mark.django_db
def test_the_board_shows_unsafe_rates_and_how_the_detector_agrees_with_annotator_flags(make_study, researcher):
    from judging.models import ScoreJob
    from judging.services import generator_metrics_run
    from tests.conftest import client_for

    study = make_study(kinds=("likert",), prompts=3, overlap_target=50, quota_per_annotator=50, screen_before_annotators=False)
    outputs = list(Output.objects.select_related("generator").order_by("pk"))
    risky = {o.pk for o in outputs if o.generator.name == "narwhal-gan"}
    for o in outputs:
        OutputScore.objects.create(output=o, scorer="nsfw", model_id="nudenet:320n", value=0.8 if o.pk in risky else 0.1)
    study_index_clear()
    shown = served_outputs(study)
    ann = Annotator.objects.create()
    flagged_risky = sorted(risky & shown)[:2]
    for oid in flagged_risky:  # people flag two of the detector's three
        Flag.objects.create(output_id=oid, annotator=ann, reason="unsafe")
    generator_metrics_run(job=ScoreJob.objects.create(kind="metrics", scorer="nsfw", study=study))
    from judging.selectors import safety_for_board

    safety = safety_for_board(study=study)
    rates = {g["name"]: g["rate"] for g in safety["generators"]}
    assert rates["narwhal-gan"] == "1.000" and rates["zebrafusion-xl"] == "0.000"
    a = safety["agreement"]
    assert a["n"] == len(shown) and a["both"] == 2 and a["only_people"] == 0
    assert a["only_detector"] == len(risky & shown) - 2 and a["neither"] == len(shown - risky)
    page = client_for(researcher).get(f"/leaderboard/{study.slug}/").content.decode()
    assert "Safety screen" in page and "Cohen" in page and "Unsafe rate" in page


@pytest.mark.django_db
def test_an_unsupported_onnxruntime_provider_fails_the_job_with_the_setting_to_fix(make_study, settings, django_capture_on_commit_callbacks):
    from judging.models import ScoreJob
    from judging.scorers import clear_scorer_cache
    from judging.services import scoring_enqueue_outputs

    make_study(kinds=("likert",), prompts=1)
    settings.ARENA_SCORERS = ["nsfw"]
    settings.ARENA_ONNX_PROVIDER = "TensorrtExecutionProvider"
    clear_scorer_cache()
    with django_capture_on_commit_callbacks(execute=True):
        scoring_enqueue_outputs(output_ids=list(Output.objects.values_list("pk", flat=True)))
    job = ScoreJob.objects.get(kind="score", scorer="nsfw")
    assert job.status == "failed" and "'TensorrtExecutionProvider' is not available" in job.message
    assert "ARENA_ONNX_PROVIDER" in job.message and not OutputScore.objects.exists()
    clear_scorer_cache()


@pytest.mark.django_db
def test_while_the_safety_screen_is_configured_unscreened_outputs_wait_for_it(make_study, settings):
    settings.ARENA_SCORERS = ["nsfw"]
    study = make_study(kinds=("likert",), prompts=1, overlap_target=50, quota_per_annotator=50)
    outputs = list(Output.objects.order_by("pk"))
    first = outputs[0]
    OutputScore.objects.create(output=first, scorer="nsfw", model_id="nudenet:320n", value=0.02)
    study_index_clear()
    assert outputs_withheld(study=study) == {o.pk for o in outputs[1:]}
    assert served_outputs(study, annotators=3) == {first.pk}
    settings.ARENA_SCORERS = []
    study_index_clear()
    assert outputs_withheld(study=study) == set()


@pytest.mark.django_db
def test_staff_queue_a_failed_screening_job_again_and_the_outputs_are_then_served(make_study, settings, admin_user, django_capture_on_commit_callbacks):
    from judging.models import ScoreJob
    from judging.scorers import clear_scorer_cache
    from judging.services import scoring_enqueue_outputs
    from tests.conftest import client_for

    settings.ARENA_SCORERS = ["nsfw"]
    study = make_study(kinds=("likert",), prompts=1)
    ids = list(Output.objects.values_list("pk", flat=True))
    settings.ARENA_ONNX_PROVIDER = "TensorrtExecutionProvider"
    clear_scorer_cache()
    with django_capture_on_commit_callbacks(execute=True):
        scoring_enqueue_outputs(output_ids=ids)
    job = ScoreJob.objects.get(kind="score", scorer="nsfw")
    assert job.status == "failed" and outputs_withheld(study=study) == set(ids)

    settings.ARENA_ONNX_PROVIDER = "CPUExecutionProvider"
    clear_scorer_cache()
    with django_capture_on_commit_callbacks(execute=True):
        res = client_for(admin_user).post("/admin/judging/scorejob/", {"action": "queue_again", "_selected_action": [job.pk]}, follow=True)
    assert "1 job(s) queued again" in res.content.decode()
    job.refresh_from_db()
    assert job.status == "done" and OutputScore.objects.filter(scorer="nsfw").count() == len(ids)
    assert outputs_withheld(study=study) == set()
    clear_scorer_cache()
