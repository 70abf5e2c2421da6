"""An upload with a `text` column (and quoted prompts) is scored for text rendering,
safety and technical quality by the real CPU scorers through the job path, and the board
shows the columns, their intervals and the quality profile."""


import pytest

from arena.imports import outputs_import
from arena.models import Criterion, Output, Study
from arena.services import outputs_imported
from judging.models import GeneratorMetric, OutputScore, ScoreJob
from judging.scorers import clear_scorer_cache
from tests.conftest import client_for, make_zip, manifest_jsonl, reference_data
from tests.judging.test_cpu_scorers import photo_png
from tests.judging.test_ocr_scorer import rendered

pytestmark = pytest.mark.django_db

SIGNS = {
    'a shop sign that says "OPEN LATE"': ("", "OPEN LATE", "OPEN LAET"),
    "a bakery window": ("FRESH BREAD", "FRESH BREAD", "FRESH BRAED"),
    'a poster saying "GOOD LUCK"': ("", "GOOD LUCK", "GOOD LUCK"),
}


def text_upload(tmp_path, study):
    rows, files = [], {}
    for p, (prompt, (column, good, bad)) in enumerate(SIGNS.items()):
        for gen, drawn in (("typeset-xl", good), ("scribble-gan", bad)):
            name = f"{gen}-{p}.png"
            files[name] = rendered(drawn)
            row = {"generator": gen, "prompt": prompt, "image": name}
            if column:
                row["text"] = column
            rows.append(row)
    for gen in ("typeset-xl", "scribble-gan"):
        files[f"{gen}-cat.png"] = photo_png("chelsea")
        rows.append({"generator": gen, "prompt": "a cat on a sofa", "image": f"{gen}-cat.png"})
    files["manifest.jsonl"] = manifest_jsonl(rows)
    return outputs_import(path=make_zip(tmp_path / "signs.zip", files), study=study)


@pytest.fixture
def cpu_scorers(settings):
    settings.ARENA_SCORERS = ["ocr", "nsfw", "quality"]
    clear_scorer_cache()
    yield settings
    clear_scorer_cache()


def test_an_upload_is_scored_for_text_safety_and_quality_and_shown_on_the_board(
    cpu_scorers, tmp_path, researcher, django_capture_on_commit_callbacks
):
    reference_data()
    study = Study.objects.create(name="Signs", slug="signs", vote_kinds=["pairwise"])
    study.criteria.add(Criterion.objects.get(slug="aesthetics"))
    with django_capture_on_commit_callbacks(execute=True):
        report = text_upload(tmp_path, study)
        outputs_imported(output_ids=report.output_ids)

    assert Output.objects.filter(target_text="FRESH BREAD").count() == 2
    jobs = ScoreJob.objects.filter(kind="score")
    assert sorted(jobs.values_list("scorer", flat=True)) == ["nsfw", "ocr", "quality"]
    assert set(jobs.values_list("status", flat=True)) == {"done"}
    ocr = {(s.output.generator.name, s.output.prompt.text): s for s in OutputScore.objects.filter(scorer="ocr").select_related("output__generator", "output__prompt")}
    cat = ocr[("typeset-xl", "a cat on a sofa")]
    assert cat.value is None and "no target text" in cat.details["skipped"]
    assert ocr[("typeset-xl", "a bakery window")].value == 1.0
    bad = ocr[("scribble-gan", "a bakery window")]
    assert bad.details["measures"]["completion_rate"] == 0 and bad.details["measures"]["word_accuracy"] == 0.5
    assert "FRESH" in bad.details["recognised"]
    assert "skipped" in ScoreJob.objects.get(kind="score", scorer="ocr").message

    metric = {(m.generator.name, m.metric): m for m in GeneratorMetric.objects.select_related("generator")}
    good_text, bad_text = metric[("typeset-xl", "text_rendering")], metric[("scribble-gan", "text_rendering")]
    assert good_text.value == 1.0 and good_text.n == 3 and bad_text.value < 1.0
    assert bad_text.details["ci_low"] < bad_text.value < bad_text.details["ci_high"]
    assert metric[("typeset-xl", "ocr_completion")].value == 1.0
    assert metric[("scribble-gan", "ocr_completion")].value == pytest.approx(1 / 3)
    assert metric[("typeset-xl", "unsafe_rate")].value == 0.0 and metric[("typeset-xl", "unsafe_rate")].n == 4
    assert metric[("typeset-xl", "sharpness")].n == 4

    page = client_for(researcher).get("/leaderboard/signs/").content.decode()
    assert "Text rendering" in page and "Unsafe rate" in page and "Sharpness" in page
    assert "95 % interval" in page  # intervals on hover
    assert "Quality profile" in page and "text rendering (OCR)" in page and "<svg" in page
    assert "Safety screen" in page
    api = client_for(researcher).get("/api/studies/signs/leaderboard/").json()
    assert api["quality_profile"]["axes"] and api["safety"]["generators"]
