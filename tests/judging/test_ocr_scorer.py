"""Text rendering: the real PP-OCRv4 model (rapidocr-onnxruntime wheel) reads strings drawn
with Debian's DejaVu Sans, correctly spelled and misspelled, and finds no text in photos."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from judging.scorers import ModelUnavailable, ScoreItem
from judging.scorers.ocr import OcrScorer, levenshtein, target_text, text_measures
from tests.conftest import need

DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


def rendered(text: str, size=(640, 200), font_size=56) -> bytes:
    need(DEJAVU.is_file(), "Debian's fonts-dejavu-core")
    font = ImageFont.truetype(str(DEJAVU), font_size)
    im = Image.new("RGB", size, (250, 248, 240))
    draw = ImageDraw.Draw(im)
    box = draw.textbbox((0, 0), text, font=font)
    x = (size[0] - (box[2] - box[0])) // 2
    y = (size[1] - (box[3] - box[1])) // 2
    draw.text((x, y), text, font=font, fill=(20, 20, 30))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def photo(name: str) -> bytes:
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(getattr(data, name)()).convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def ocr():
    return OcrScorer(threads=1).load()


def test_the_target_text_is_the_text_column_or_else_the_quoted_spans_of_the_prompt():
    assert target_text('a sign that says "OPEN LATE"', "CLOSED") == "CLOSED"
    assert target_text('a mug reading \u201cgood morning\u201d and a note saying "buy milk"') == "good morning buy milk"
    assert target_text("a red cube on a glass table") == ""
    assert target_text("it's the cat's bowl") == ""  # apostrophes are not quotes


def test_oneig_measures_follow_the_published_definitions():
    # ED: Levenshtein on normalised strings; CR: ED == 0; WAC: matched words / target words;
    # text score = 1 - min(100, ED) (1 - CR) (1 - WAC) / 100 (OneIG-Bench, English).
    exact = text_measures("Open, Late!", "Open Late")
    assert (exact["edit_distance"], exact["completion_rate"], exact["word_accuracy"], exact["text_score"]) == (0, 1, 1, 1)
    swapped = text_measures("OPEN LAET", "OPEN LATE")  # a transposition is two substitutions
    assert swapped["edit_distance"] == 2 and swapped["completion_rate"] == 0 and swapped["word_accuracy"] == 0.5
    assert swapped["text_score"] == pytest.approx(1 - 2 * 1 * 0.5 / 100)
    nothing = text_measures("", "HELLO WORLD")
    assert nothing["edit_distance"] == 11 and nothing["word_accuracy"] == 0 and nothing["text_score"] == pytest.approx(1 - 11 / 100)
    assert levenshtein("kitten", "sitting") == 3


def test_it_reads_a_correctly_rendered_string_as_complete(ocr):
    [r] = ocr.score_batch([ScoreItem(image=io.BytesIO(rendered("OPEN LATE")), prompt='a shop sign that says "OPEN LATE"')])
    assert r.recognised.replace(" ", "") == "OPENLATE", r.recognised
    assert r.measures["word_accuracy"] == 1.0 and r.measures["completion_rate"] == 1.0
    assert r.measures["text_score"] == 1.0 and r.reason == ""


def test_a_misspelled_rendering_loses_completion_and_the_misspelled_word(ocr):
    items = [
        ScoreItem(image=io.BytesIO(rendered("OPEN LAET")), prompt="a shop sign", text="OPEN LATE"),
        ScoreItem(image=io.BytesIO(rendered("FRESH BREAD DAILY")), prompt="bakery window", text="FRESH BREAD DAILY"),
        ScoreItem(image=io.BytesIO(rendered("FRESH BRAED DAILY")), prompt="bakery window", text="FRESH BREAD DAILY"),
    ]
    misspelled, right, wrong = ocr.score_batch(items)
    assert misspelled.measures["completion_rate"] == 0 and misspelled.measures["word_accuracy"] == 0.5
    assert misspelled.measures["edit_distance"] >= 2
    assert right.measures["completion_rate"] == 1 and right.measures["text_score"] == 1
    assert wrong.measures["word_accuracy"] == pytest.approx(2 / 3)
    assert wrong.measures["text_score"] < right.measures["text_score"]


@pytest.mark.parametrize("name", ["astronaut", "chelsea", "coffee"])
def test_a_photo_without_text_scores_no_completion_with_the_reason(ocr, name):
    [r] = ocr.score_batch([ScoreItem(image=io.BytesIO(photo(name)), prompt='a poster saying "WELCOME HOME"')])
    assert r.measures["completion_rate"] == 0 and r.measures["word_accuracy"] == 0
    assert r.reason == "no text found in the image" and r.recognised == ""


def test_a_prompt_without_target_text_is_skipped_not_scored_zero(ocr):
    [r] = ocr.score_batch([ScoreItem(image=io.BytesIO(photo("chelsea")), prompt="a cat on a sofa")])
    assert r.skipped and r.measures is None and "no target text" in r.reason
    value, details = OcrScorer.record(r, ScoreItem(image=None, prompt="a cat on a sofa"))
    assert value is None and "no target text" in details["skipped"]


def test_a_missing_or_corrupt_model_file_or_an_unknown_provider_is_a_clear_error(tmp_path):
    with pytest.raises(ModelUnavailable, match="PP-OCRv4 detection model file .* is missing"):
        OcrScorer(model_dir=str(tmp_path)).load()
    import rapidocr_onnxruntime

    models = Path(rapidocr_onnxruntime.__file__).parent / "models"
    for f in models.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    (tmp_path / "ch_PP-OCRv4_rec_infer.onnx").write_bytes(b"\x08\x01garbage" * 10)
    with pytest.raises(ModelUnavailable, match="could not be loaded"):
        OcrScorer(model_dir=str(tmp_path)).load()
    with pytest.raises(ModelUnavailable, match="'TensorrtExecutionProvider' is not available here"):
        OcrScorer(provider="TensorrtExecutionProvider").load()


def test_recognised_lines_are_ordered_top_to_bottom(ocr):
    need(DEJAVU.is_file(), "Debian's fonts-dejavu-core")
    font = ImageFont.truetype(str(DEJAVU), 48)
    im = Image.new("RGB", (520, 300), "white")
    d = ImageDraw.Draw(im)
    d.text((40, 40), "FIRST LINE", font=font, fill="black")
    d.text((40, 180), "SECOND LINE", font=font, fill="black")
    lines = ocr.read(im)
    assert "".join(ln["text"] for ln in lines).replace(" ", "") == "FIRSTLINESECONDLINE"
    assert all(0 < ln["confidence"] <= 1 for ln in lines)
    assert np.isfinite([p for ln in lines for pt in ln["box"] for p in pt]).all()
