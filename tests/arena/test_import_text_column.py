"""The manifest's optional `text` column: the text an image should render (OCR metric)."""

import pytest

from arena.imports import ImportRejected, outputs_import
from arena.models import Output
from tests.conftest import make_zip, manifest_jsonl, png_bytes

pytestmark = pytest.mark.django_db


def test_the_text_column_is_stored_with_each_output_from_csv_and_jsonl(tmp_path):
    csv_text = "generator,prompt,image,text\nsdxl,a bakery window,a.png,FRESH BREAD\nflux,a bakery window,b.png,\n"
    outputs_import(path=make_zip(tmp_path / "c.zip", {"manifest.csv": csv_text.encode(), "a.png": png_bytes(), "b.png": png_bytes(color=(1, 2, 3))}))
    assert dict(Output.objects.values_list("generator__name", "target_text")) == {"sdxl": "FRESH BREAD", "flux": ""}
    rows = [{"generator": "g", "prompt": "a sign", "image": "c.png", "text": "  OPEN LATE "}]
    outputs_import(path=make_zip(tmp_path / "j.zip", {"manifest.jsonl": manifest_jsonl(rows), "c.png": png_bytes(color=(9, 9, 9))}))
    assert Output.objects.get(generator__name="g").target_text == "OPEN LATE"


def test_a_text_that_is_not_a_string_is_refused_with_its_line(tmp_path):
    rows = [{"generator": "g", "prompt": "a sign", "image": "a.png", "text": ["OPEN"]}]
    with pytest.raises(ImportRejected) as exc:
        outputs_import(path=make_zip(tmp_path / "u.zip", {"manifest.jsonl": manifest_jsonl(rows), "a.png": png_bytes()}))
    assert "line 1: 'text' must be a string, got list" in str(exc.value)
    assert not Output.objects.exists()
