"""Uploads through the staff page and the REST API, and who may use them."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from arena.models import Rendition, Image, Output, Upload
from tests.conftest import api_client_for, client_for, make_zip, png_bytes, sample_files

pytestmark = pytest.mark.django_db


def zip_upload(tmp_path, files=None, name="outputs.zip"):
    path = make_zip(tmp_path / name, files or sample_files())
    return SimpleUploadedFile(name, path.read_bytes(), content_type="application/zip")


@pytest.mark.parametrize(
    "persona,expected", [("admin", 202), ("researcher", 403), ("annotator", 403), ("outsider", 403), ("anonymous", 401)]
)
def test_only_staff_can_post_an_upload_to_the_api(personas, persona, expected, tmp_path, django_capture_on_commit_callbacks):
    client = api_client_for(personas[persona])
    with django_capture_on_commit_callbacks(execute=True):
        res = client.post("/api/uploads/", {"file": zip_upload(tmp_path)}, format="multipart")
    assert res.status_code == expected
    assert Output.objects.count() == (4 if expected == 202 else 0)


@pytest.mark.parametrize(
    "persona,expected", [("admin", 200), ("researcher", 403), ("annotator", 403), ("outsider", 403), ("anonymous", 401)]
)
def test_only_staff_can_read_upload_status(personas, persona, expected):
    upload = Upload.objects.create(source_name="x.zip")
    assert api_client_for(personas[persona]).get(f"/api/uploads/{upload.pk}/").status_code == expected
    assert api_client_for(personas[persona]).get("/api/uploads/").status_code == expected


def test_an_api_upload_answers_202_then_reports_the_import(admin_user, tmp_path, django_capture_on_commit_callbacks):
    client = api_client_for(admin_user)
    with django_capture_on_commit_callbacks(execute=True):
        res = client.post("/api/uploads/", {"file": zip_upload(tmp_path)}, format="multipart")
    assert res.status_code == 202
    assert res["Location"].endswith(f"/api/uploads/{res.data['id']}/")
    status = client.get(f"/api/uploads/{res.data['id']}/").json()
    assert status["status"] == "done"
    assert status["rows_imported"] == 4 and status["rows_rejected"] == 0 and status["errors"] == []
    assert status["progress_percent"] == 100


def test_a_bad_api_upload_reports_the_row_and_keeps_nothing(admin_user, tmp_path, settings, django_capture_on_commit_callbacks):
    files = sample_files()
    files["img/g1_p1.png"] = b"not an image"
    client = api_client_for(admin_user)
    with django_capture_on_commit_callbacks(execute=True):
        res = client.post("/api/uploads/", {"file": zip_upload(tmp_path, files)}, format="multipart")
    status = client.get(f"/api/uploads/{res.data['id']}/").json()
    assert status["status"] == "failed"
    assert status["rows_imported"] == 0 and status["rows_rejected"] == 1
    assert status["errors"] == [{"line": 4, "message": "img/g1_p1.png is not an image (Pillow cannot identify it)"}]
    assert Output.objects.count() == 0 and Image.objects.count() == 0
    assert [p for p in settings.MEDIA_ROOT.rglob("*") if p.is_file()] == []
    assert list(settings.ARENA_UPLOAD_DIR.iterdir()) == []


def test_an_api_upload_over_the_size_limit_gets_413(admin_user, tmp_path, settings):
    settings.ARENA_UPLOAD_MAX_BYTES = 100
    res = api_client_for(admin_user).post("/api/uploads/", {"file": zip_upload(tmp_path)}, format="multipart")
    assert res.status_code == 413
    assert "over the limit of 100 bytes (ARENA_UPLOAD_MAX_BYTES)" in res.json()["file"][0]
    assert Upload.objects.count() == 0
    assert list(settings.ARENA_UPLOAD_DIR.iterdir()) == []


def test_an_api_upload_that_is_not_a_zip_gets_400(admin_user):
    f = SimpleUploadedFile("outputs.tar", b"data", content_type="application/x-tar")
    res = api_client_for(admin_user).post("/api/uploads/", {"file": f}, format="multipart")
    assert res.status_code == 400
    assert res.json() == {"file": ["outputs.tar is not a .zip archive"]}
    assert Upload.objects.count() == 0


def test_the_api_without_a_file_says_which_field_is_missing(admin_user):
    res = api_client_for(admin_user).post("/api/uploads/", {}, format="multipart")
    assert res.status_code == 400
    assert "file" in res.json()


@pytest.mark.parametrize(
    "persona,expected", [("admin", 200), ("researcher", 403), ("annotator", 403), ("outsider", 403), ("anonymous", 302)]
)
def test_only_staff_can_open_the_upload_page(personas, persona, expected):
    upload = Upload.objects.create(source_name="x.zip")
    c = client_for(personas[persona])
    for url in ("/staff/uploads/", f"/staff/uploads/{upload.pk}/"):
        res = c.get(url)
        assert res.status_code == expected
        if expected == 302:
            assert res["Location"].startswith("/accounts/login/")


def test_the_upload_page_imports_and_shows_the_report(admin_user, tmp_path, django_capture_on_commit_callbacks):
    c = client_for(admin_user)
    with django_capture_on_commit_callbacks(execute=True):
        res = c.post("/staff/uploads/", {"file": zip_upload(tmp_path)})
    assert res.status_code == 302
    page = c.get(res["Location"]).content.decode()
    assert 'data-status="done"' in page
    assert '<dd id="rows-imported">4</dd>' in page


def test_the_upload_page_lists_problems_of_a_failed_import(admin_user, tmp_path, django_capture_on_commit_callbacks):
    files = sample_files()
    del files["img/g0_p1.png"]
    c = client_for(admin_user)
    with django_capture_on_commit_callbacks(execute=True):
        res = c.post("/staff/uploads/", {"file": zip_upload(tmp_path, files)})
    page = c.get(res["Location"]).content.decode()
    assert 'data-status="failed"' in page
    assert "image file &#x27;img/g0_p1.png&#x27; is not in the upload" in page


def test_the_upload_status_fragment_polls_until_finished(admin_user):
    upload = Upload.objects.create(source_name="x.zip", status=Upload.Status.RUNNING, rows_total=200, rows_checked=50)
    c = client_for(admin_user)
    frag = c.get(f"/staff/uploads/{upload.pk}/", HTTP_HX_REQUEST="true").content.decode()
    assert frag.lstrip().startswith('<div id="upload-status"') and 'hx-trigger="every 1s"' in frag
    assert "25 %" in frag and "<html" not in frag
    upload.status = Upload.Status.DONE
    upload.save()
    assert "hx-trigger" not in c.get(f"/staff/uploads/{upload.pk}/", HTTP_HX_REQUEST="true").content.decode()


def test_posting_an_upload_without_csrf_is_refused(admin_user, tmp_path):
    from django.test import Client

    c = Client(enforce_csrf_checks=True)
    c.force_login(admin_user)
    res = c.post("/staff/uploads/", {"file": zip_upload(tmp_path)})
    assert res.status_code == 403
    assert Upload.objects.count() == 0


def test_images_are_served_by_hash_with_long_caching(admin_user, tmp_path, django_capture_on_commit_callbacks):
    data = png_bytes(color=(9, 9, 9))
    from arena.imports import outputs_import

    files = {"manifest.jsonl": b'{"generator": "g", "prompt": "p", "image": "a.png"}\n', "a.png": data}
    outputs_import(path=make_zip(tmp_path / "u.zip", files))
    url = Output.objects.get().image.url
    # The original (whose bytes may name its generator) is for researchers and staff only.
    assert client_for(None).get(url).status_code == 404
    res = client_for(admin_user).get(url)
    assert res.status_code == 200 and b"".join(res.streaming_content) == data
    assert "immutable" in res["Cache-Control"] and "private" in res["Cache-Control"]
    shown = Rendition.objects.get().url
    res = client_for(None).get(shown)
    assert res.status_code == 200 and res["Content-Type"] == "image/webp"
    assert "immutable" in res["Cache-Control"] and "public" in res["Cache-Control"]
    assert client_for(None).get("/media/../settings.py").status_code == 404
    assert client_for(None).get("/media/images/00/00/" + "0" * 64 + ".png").status_code == 404


def test_the_openapi_schema_describes_the_upload_api(admin_user):
    res = client_for(admin_user).get("/api/schema/")
    assert res.status_code == 200
    assert b"/api/uploads/" in res.content


def test_the_admin_refuses_a_study_with_an_unknown_vote_kind(admin_user):
    from arena.models import Criterion, Study

    c = client_for(admin_user)
    crit = Criterion.objects.get(slug="aesthetics")
    res = c.post("/admin/arena/study/add/", {
        "name": "Typo", "slug": "typo", "vote_kinds": '["pairwize"]', "categories": "[]", "criteria": [crit.pk],
        "overlap_target": 3, "quota_per_annotator": 10, "sampler": "uniform", "gold_rate": 0, "completion_code": "X",
        "is_open": "on", "allow_new_generators": "on",
    })
    assert res.status_code == 200
    assert "Unknown vote kind(s) pairwize; use likert, binary, pairwise, questions." in res.content.decode()
    assert not Study.objects.filter(slug="typo").exists()


def test_prompts_made_in_the_admin_get_their_lookup_key_and_imports_find_them(admin_user, tmp_path):
    from arena.imports import outputs_import
    from arena.models import Prompt

    c = client_for(admin_user)
    for text in ("a red cube", "a blue sphere"):
        res = c.post("/admin/arena/prompt/add/", {"text": text, "category": "shapes", "source": "", "questions": "[]"})
        assert res.status_code == 302
    assert Prompt.objects.count() == 2
    files = {"manifest.jsonl": b'{"generator": "g", "prompt": "a red cube", "image": "a.png"}\n', "a.png": png_bytes()}
    outputs_import(path=make_zip(tmp_path / "u.zip", files))
    assert Prompt.objects.count() == 2
    assert Output.objects.get().prompt.category == "shapes"
