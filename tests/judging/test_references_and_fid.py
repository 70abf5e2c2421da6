"""Reference sets and FID jobs, with Inception weights loaded from a local file (random here)."""

import io

import numpy as np
import pytest
import torch
from django.core.management import CommandError, call_command

from arena.models import Output
from judging.models import GeneratorMetric, ReferenceSet, ScoreJob
from judging.scorers import clear_scorer_cache
from judging.services import fid_run
from tests.conftest import png_bytes

pytestmark = pytest.mark.django_db


def image_folder(path, n, seed=0):
    path.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        (path / f"{i}.png").write_bytes(png_bytes(color=tuple(int(c) for c in rng.integers(0, 255, 3)), size=(24, 24)))
    return path


@pytest.fixture(scope="session")
def fid_weights(tmp_path_factory):
    from judging.scorers.fid import build_fid_inception

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("fid") / "pt_inception-random.pth"
    torch.save(build_fid_inception().state_dict(), path)
    return path


def test_a_reference_set_is_imported_from_a_folder_of_images(tmp_path):
    out = io.StringIO()
    call_command("import_reference", "coco-sample", str(image_folder(tmp_path / "ref", 5)), stdout=out)
    ref = ReferenceSet.objects.get(name="coco-sample")
    assert ref.source == "images" and ref.n_images == 5 and ref.images.count() == 5
    assert "5 image(s)" in out.getvalue()


def test_bad_reference_input_is_refused_with_the_reason(tmp_path):
    folder = image_folder(tmp_path / "ref", 3)
    (folder / "broken.png").write_bytes(b"nope")
    with pytest.raises(CommandError, match="broken.png is not an image"):
        call_command("import_reference", "r", str(folder))
    np.savez(tmp_path / "bad.npz", mu=np.zeros(4), sigma=np.zeros((3, 3)))
    with pytest.raises(CommandError, match=r"mu must be \(d,\) and sigma \(d, d\)"):
        call_command("import_reference", "r", str(tmp_path / "bad.npz"))
    assert ReferenceSet.objects.count() == 0


def test_fid_of_each_generator_is_the_frechet_distance_of_its_inception_features(make_study, tmp_path, settings, fid_weights):
    # frechet_distance itself is checked against pytorch-fid in test_metrics; here: which images, which features.
    from judging.metrics import frechet_distance as calculate_frechet_distance
    from judging.scorers.fid import FIDFeatureScorer

    settings.ARENA_FID_WEIGHTS = str(fid_weights)
    settings.ARENA_DEVICE = "cpu"
    clear_scorer_cache()
    study = make_study(kinds=("pairwise",), prompts=3, generators=["alpha-gen", "beta-gen"])
    call_command("import_reference", "ref", str(image_folder(tmp_path / "ref", 4, seed=1)), stdout=io.StringIO())
    job = ScoreJob.objects.create(kind="metrics", scorer="fid", study=study)
    fid_run(job=job)
    scorer = FIDFeatureScorer(str(fid_weights)).load("cpu")

    def stats(paths):
        f = scorer.features([str(p) for p in paths]).astype(np.float64)
        return f.mean(axis=0), np.cov(f, rowvar=False)

    ref = ReferenceSet.objects.get()
    mu_r, s_r = stats([settings.MEDIA_ROOT / i.relative_path for i in ref.images.all()])
    for name in ("alpha-gen", "beta-gen"):
        paths = [settings.MEDIA_ROOT / o.image.relative_path for o in Output.objects.filter(generator__name=name)]
        mu_g, s_g = stats(paths)
        expected = calculate_frechet_distance(mu_g, s_g, mu_r, s_r)
        got = GeneratorMetric.objects.get(generator__name=name, metric="fid").value
        assert got == pytest.approx(expected, rel=1e-5)
    assert ScoreJob.objects.get(pk=job.pk).status == "done"


def test_fid_without_weights_fails_the_job_naming_the_setting(make_study, tmp_path, settings, django_capture_on_commit_callbacks):
    from judging.services import fid_enqueue

    settings.ARENA_FID_WEIGHTS = ""
    clear_scorer_cache()
    study = make_study(kinds=("pairwise",), prompts=2)
    call_command("import_reference", "ref", str(image_folder(tmp_path / "ref", 3)), stdout=io.StringIO())
    with django_capture_on_commit_callbacks(execute=True):
        job = fid_enqueue(study_id=study.pk)
    job.refresh_from_db()
    assert job.status == "failed" and "ARENA_FID_WEIGHTS" in job.message
    assert not GeneratorMetric.objects.filter(metric="fid").exists()


def test_the_fid_pass_also_gives_is_kid_precision_recall_density_and_coverage(make_study, tmp_path, settings, fid_weights, researcher):
    # The metric functions are checked against torch-fidelity and prdc in test_distribution_metrics;
    # here: they are fed the same network's features and logits, and small sets say so.
    import torch as T
    from torch_fidelity.metric_isc import isc_features_to_metric

    from judging.scorers.fid import FIDFeatureScorer
    from tests.conftest import client_for

    settings.ARENA_FID_WEIGHTS = str(fid_weights)
    settings.ARENA_DEVICE = "cpu"
    settings.ARENA_KID_SUBSET_SIZE = 8
    clear_scorer_cache()
    study = make_study(kinds=("pairwise",), prompts=12, generators=["alpha-gen", "beta-gen"])
    call_command("import_reference", "ref", str(image_folder(tmp_path / "ref", 12, seed=1)), stdout=io.StringIO())
    job = ScoreJob.objects.create(kind="metrics", scorer="fid", study=study)
    fid_run(job=job)
    assert ScoreJob.objects.get(pk=job.pk).status == "done"

    net = FIDFeatureScorer(str(fid_weights)).load("cpu")
    paths = [str(settings.MEDIA_ROOT / o.image.relative_path) for o in Output.objects.filter(generator__name="alpha-gen")]
    with T.inference_mode():
        pool = T.from_numpy(net.features(paths)).double()
        logits = pool @ net.model.inception.fc.weight.double().T  # torch-fidelity's "logits_unbiased"
    expected = isc_features_to_metric(logits, splits=10, shuffle=False)["inception_score_mean"]
    got = {m.metric: m for m in GeneratorMetric.objects.filter(generator__name="alpha-gen")}
    assert got["inception_score"].value == pytest.approx(expected, rel=1e-5)
    for key in ("kid", "precision", "recall", "density", "coverage"):
        assert got[key].value is not None and got[key].n == 12, key
    assert 0 <= got["precision"].value <= 1 and 0 <= got["coverage"].value <= 1

    settings.ARENA_KID_SUBSET_SIZE = 1000
    fid_run(job=ScoreJob.objects.create(kind="metrics", scorer="fid", study=study))
    kid = GeneratorMetric.objects.get(generator__name="alpha-gen", metric="kid")
    assert kid.value is None and "KID subset size 1000 is larger than the set" in kid.details["unavailable"]
    page = client_for(researcher).get(f"/leaderboard/{study.slug}/").content.decode()
    assert "KID subset size 1000 is larger than the set" in page and "n/a" in page


def test_an_empty_reference_set_is_a_clear_job_error(make_study, settings, fid_weights):
    settings.ARENA_FID_WEIGHTS = str(fid_weights)
    study = make_study(kinds=("pairwise",), prompts=2)
    ReferenceSet.objects.create(name="empty", source="images")
    job = ScoreJob.objects.create(kind="metrics", scorer="fid", study=study, status="running")
    from judging.services import JobFailed

    with pytest.raises(JobFailed, match="reference set 'empty' is empty"):
        fid_run(job=job)


def _lying_zip(path, files: dict[str, bytes], lie: str) -> None:
    """A .zip whose central directory says `lie` unpacks to 10 bytes, fewer than it does."""
    import struct
    import zipfile

    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    raw = bytearray(path.read_bytes())
    at = raw.find(b"PK\x01\x02")
    while at != -1:
        name_len = struct.unpack_from("<H", raw, at + 28)[0]
        name = bytes(raw[at + 46:at + 46 + name_len]).decode()
        if name == lie:
            struct.pack_into("<I", raw, at + 24, 10)  # uncompressed size in the central directory
        at = raw.find(b"PK\x01\x02", at + 46)
    path.write_bytes(bytes(raw))


def test_a_reference_archive_entry_that_unpacks_past_its_declared_size_is_refused(tmp_path):
    files = {f"ref/{i}.png": png_bytes(color=(20 * i, 40, 60), size=(24, 24)) for i in range(3)}
    _lying_zip(tmp_path / "ref.zip", files, lie="ref/1.png")
    with pytest.raises(CommandError, match=r"ref/1.png.* is corrupt or not what its header declares"):
        call_command("import_reference", "r", str(tmp_path / "ref.zip"))
    assert ReferenceSet.objects.count() == 0


def test_a_reference_archive_with_a_path_outside_it_is_refused(tmp_path):
    import zipfile

    with zipfile.ZipFile(tmp_path / "ref.zip", "w") as zf:
        zf.writestr("a.png", png_bytes())
        zf.writestr("../b.png", png_bytes(color=(1, 2, 3)))
    with pytest.raises(CommandError, match=r"absolute paths or '\.\.'"):
        call_command("import_reference", "r", str(tmp_path / "ref.zip"))
    assert ReferenceSet.objects.count() == 0


def test_a_reference_import_that_fails_while_storing_leaves_no_image_file(tmp_path, settings, monkeypatch):
    from pathlib import Path

    folder = image_folder(tmp_path / "ref", 3)

    def broken(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(ReferenceSet.objects, "create", broken)
    with pytest.raises(RuntimeError):
        call_command("import_reference", "r", str(folder))
    assert [p for p in (Path(settings.MEDIA_ROOT) / "images").rglob("*") if p.is_file()] == []
    assert ReferenceSet.objects.count() == 0
