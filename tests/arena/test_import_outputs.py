"""`manage.py import_outputs`: good uploads land once, bad ones leave nothing behind."""

import hashlib
import io
import struct
import zipfile
import zlib

import pytest
from django.core.management import CommandError, call_command
from PIL import Image as PILImage

from arena.models import Generator, Image, Output, Prompt, Study, Upload
from tests.conftest import make_zip, manifest_jsonl, png_bytes, sample_files

pytestmark = pytest.mark.django_db


def stored_files(settings):
    return [p for p in settings.MEDIA_ROOT.rglob("*") if p.is_file()]


def assert_nothing_stored(settings):
    assert Output.objects.count() == 0
    assert Image.objects.count() == 0
    assert Generator.objects.count() == 0
    assert Prompt.objects.count() == 0
    assert Upload.objects.count() == 0
    assert stored_files(settings) == []


def run_import(path, *args):
    out = io.StringIO()
    call_command("import_outputs", str(path), *args, stdout=out)
    return out.getvalue()


def rejected(path, *args) -> str:
    with pytest.raises(CommandError) as exc:
        run_import(path, *args)
    return str(exc.value)


# --------------------------------------------------------------------------- good input


def test_it_imports_every_row_and_stores_images_under_their_sha256(tmp_path, settings):
    files = sample_files(n_generators=2, n_prompts=3)
    out = run_import(make_zip(tmp_path / "outputs.zip", files))
    assert "6 output(s) imported" in out
    assert Output.objects.count() == 6
    assert set(Generator.objects.values_list("name", flat=True)) == {"gen-0", "gen-1"}
    for output in Output.objects.select_related("image"):
        data = files[f"img/g{output.generator.name[-1]}_p{output.prompt.text[-1]}.png"]
        digest = hashlib.sha256(data).hexdigest()
        assert output.image.sha256 == digest
        path = settings.MEDIA_ROOT / "images" / digest[:2] / digest[2:4] / f"{digest}.png"
        assert path.read_bytes() == data
        assert output.image.url == f"/media/images/{digest[:2]}/{digest[2:4]}/{digest}.png"
        assert "gen" not in output.image.url and "g0_p" not in output.image.url
        assert (output.image.width, output.image.height) == (32 + int(output.prompt.text[-1]), 24)


def test_a_command_line_import_is_listed_with_the_uploads_and_owns_its_outputs(tmp_path, admin_user):
    from tests.conftest import client_for

    run_import(make_zip(tmp_path / "outputs.zip", sample_files(n_generators=2, n_prompts=2)))
    upload = Upload.objects.get()
    assert upload.status == "done" and upload.source_name == "outputs.zip"
    assert (upload.rows_total, upload.rows_imported) == (4, 4)
    assert set(upload.outputs.values_list("pk", flat=True)) == set(Output.objects.values_list("pk", flat=True))
    page = client_for(admin_user).get("/staff/uploads/").content.decode()
    assert "outputs.zip" in page and "command line" in page, page[page.find("Recent uploads"):][:1500]


def test_identical_bytes_are_stored_once(tmp_path, settings):
    same = png_bytes(color=(1, 2, 3))
    rows = [
        {"generator": "a", "prompt": "p1", "image": "x.png"},
        {"generator": "b", "prompt": "p1", "image": "y.png"},
    ]
    run_import(make_zip(tmp_path / "u.zip", {"manifest.jsonl": manifest_jsonl(rows), "x.png": same, "y.png": same}))
    assert Output.objects.count() == 2
    assert Image.objects.count() == 1
    # One original and one display rendition: the same bytes are not stored twice.
    assert len([p for p in stored_files(settings) if p.parts[-4] == "images"]) == 1
    assert len([p for p in stored_files(settings) if p.parts[-4] == "display"]) == 1


def test_importing_the_same_archive_twice_adds_nothing(tmp_path):
    path = make_zip(tmp_path / "u.zip", sample_files())
    run_import(path)
    out = run_import(path)
    assert "0 output(s) imported; 4 already present" in out
    assert Output.objects.count() == 4


def test_it_reads_a_csv_manifest_with_questions_and_metadata(tmp_path):
    csv_text = (
        "generator,prompt,image,seed,category,questions,metadata\n"
        'sdxl,a red cube,a.png,7,shapes,"[""Is there a cube?"", ""Is it red?""]","{""steps"": 30}"\n'
    )
    run_import(make_zip(tmp_path / "u.zip", {"manifest.csv": csv_text.encode(), "a.png": png_bytes()}))
    out = Output.objects.get()
    assert (out.generator.name, out.seed, out.metadata) == ("sdxl", 7, {"steps": 30})
    assert out.prompt.category == "shapes"
    assert out.prompt.questions == ["Is there a cube?", "Is it red?"]


def test_it_imports_a_folder_and_a_zip_with_one_top_level_folder(tmp_path):
    folder = tmp_path / "batch"
    for name, data in sample_files(1, 2).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    run_import(folder)
    assert Output.objects.count() == 2
    nested = {f"run1/{k}": v for k, v in sample_files(2, 2).items()}
    run_import(make_zip(tmp_path / "nested.zip", nested))
    assert Output.objects.count() == 4


def test_it_adds_generators_and_prompts_to_the_named_study(tmp_path):
    study = Study.objects.create(name="S", slug="s", vote_kinds=["pairwise"])
    run_import(make_zip(tmp_path / "u.zip", sample_files()), "--study", "s")
    assert set(study.generators.values_list("name", flat=True)) == {"gen-0", "gen-1"}
    assert study.prompts.count() == 2


# --------------------------------------------------------------------------- bad input


def test_a_missing_manifest_is_refused(tmp_path, settings):
    msg = rejected(make_zip(tmp_path / "u.zip", {"a.png": png_bytes()}))
    assert "no manifest.jsonl or manifest.csv" in msg
    assert_nothing_stored(settings)


def test_an_empty_manifest_is_refused(tmp_path, settings):
    msg = rejected(make_zip(tmp_path / "u.zip", {"manifest.jsonl": b"\n  \n", "a.png": png_bytes()}))
    assert "manifest.jsonl is empty" in msg
    assert_nothing_stored(settings)


def test_unknown_columns_are_named(tmp_path, settings):
    rows = [{"generator": "g", "prompt": "p", "image": "a.png", "colour": "red"}]
    msg = rejected(make_zip(tmp_path / "u.zip", {"manifest.jsonl": manifest_jsonl(rows), "a.png": png_bytes()}))
    assert "line 1: unknown column(s) colour" in msg
    assert_nothing_stored(settings)


def test_missing_columns_are_named(tmp_path, settings):
    csv_text = b"generator,prompt\ng,p\n"
    msg = rejected(make_zip(tmp_path / "u.zip", {"manifest.csv": csv_text}))
    assert "line 1: missing column(s) image" in msg
    assert_nothing_stored(settings)


def test_a_file_named_but_absent_is_refused_with_its_row(tmp_path, settings):
    rows = [
        {"generator": "g", "prompt": "p", "image": "a.png"},
        {"generator": "g", "prompt": "q", "image": "img/missing.png"},
    ]
    msg = rejected(make_zip(tmp_path / "u.zip", {"manifest.jsonl": manifest_jsonl(rows), "a.png": png_bytes()}))
    assert "line 2: image file 'img/missing.png' is not in the upload" in msg
    assert_nothing_stored(settings)


def test_a_file_that_is_not_an_image_is_refused(tmp_path, settings):
    rows = [{"generator": "g", "prompt": "p", "image": "a.png"}, {"generator": "g", "prompt": "q", "image": "notes.png"}]
    files = {"manifest.jsonl": manifest_jsonl(rows), "a.png": png_bytes(), "notes.png": b"just some text, not pixels"}
    msg = rejected(make_zip(tmp_path / "u.zip", files))
    assert "line 2: notes.png is not an image" in msg
    assert_nothing_stored(settings)


def test_a_truncated_image_is_refused(tmp_path, settings):
    whole = png_bytes(size=(64, 64), fmt="JPEG")
    rows = [{"generator": "g", "prompt": "p", "image": "cut.jpg"}]
    files = {"manifest.jsonl": manifest_jsonl(rows), "cut.jpg": whole[: len(whole) // 2]}
    msg = rejected(make_zip(tmp_path / "u.zip", files))
    assert "line 1: cut.jpg is truncated or corrupt" in msg
    assert_nothing_stored(settings)


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge canvas: a decompression bomb's signature."""
    real = png_bytes(size=(1, 1))
    ihdr_data = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr_data
    ihdr = struct.pack(">I", len(ihdr_data)) + chunk + struct.pack(">I", zlib.crc32(chunk) & 0xFFFFFFFF)
    return real[:8] + ihdr + real[8 + 25 :]


def test_a_decompression_bomb_is_refused_before_decoding(tmp_path, settings):
    rows = [{"generator": "g", "prompt": "p", "image": "bomb.png"}]
    files = {"manifest.jsonl": manifest_jsonl(rows), "bomb.png": _png_claiming(60000, 60000)}
    msg = rejected(make_zip(tmp_path / "u.zip", files))
    assert "line 1: bomb.png is 3,600,000,000 pixels, over the limit of 40,000,000 (ARENA_MAX_IMAGE_PIXELS)" in msg
    assert "decompression bomb" in msg
    assert_nothing_stored(settings)


def test_the_pixel_cap_is_a_setting(tmp_path, settings):
    settings.ARENA_MAX_IMAGE_PIXELS = 100
    rows = [{"generator": "g", "prompt": "p", "image": "a.png"}]
    msg = rejected(make_zip(tmp_path / "u.zip", {"manifest.jsonl": manifest_jsonl(rows), "a.png": png_bytes(size=(20, 20))}))
    assert "400 pixels, over the limit of 100 (ARENA_MAX_IMAGE_PIXELS)" in msg
    assert_nothing_stored(settings)


@pytest.mark.parametrize("evil", ["../escape.png", "img/../../escape.png", "/etc/escape.png"])
def test_zip_entries_with_parent_or_absolute_paths_are_refused(tmp_path, settings, evil):
    rows = [{"generator": "g", "prompt": "p", "image": "a.png"}]
    files = {"manifest.jsonl": manifest_jsonl(rows), "a.png": png_bytes(), evil: png_bytes()}
    msg = rejected(make_zip(tmp_path / "u.zip", files))
    assert "absolute paths or '..'" in msg and repr(evil) in msg
    assert_nothing_stored(settings)
    assert not (tmp_path / "escape.png").exists()


def test_a_zip_bomb_over_the_uncompressed_cap_is_refused(tmp_path, settings):
    settings.ARENA_UPLOAD_MAX_UNCOMPRESSED_BYTES = 1_000_000
    rows = [{"generator": "g", "prompt": "p", "image": "a.png"}]
    files = {"manifest.jsonl": manifest_jsonl(rows), "a.png": png_bytes(), "padding.bin": b"\0" * 5_000_000}
    path = make_zip(tmp_path / "u.zip", files)
    assert path.stat().st_size < 100_000
    msg = rejected(path)
    assert "unpacks to" in msg and "over the limit of 1,000,000 bytes (ARENA_UPLOAD_MAX_UNCOMPRESSED_BYTES)" in msg
    assert_nothing_stored(settings)


def test_an_archive_with_too_many_entries_is_refused(tmp_path, settings):
    settings.ARENA_UPLOAD_MAX_ENTRIES = 10
    files = sample_files()
    files.update({f"extra/{i}.txt": b"x" for i in range(20)})
    msg = rejected(make_zip(tmp_path / "u.zip", files))
    assert "entries, over the limit of 10 (ARENA_UPLOAD_MAX_ENTRIES)" in msg
    assert_nothing_stored(settings)


def test_duplicate_rows_are_refused(tmp_path, settings):
    rows = [
        {"generator": "g", "prompt": "p", "image": "a.png"},
        {"generator": "h", "prompt": "p", "image": "b.png", "seed": 1},
        {"generator": "g", "prompt": "p", "image": "a.png"},
        {"generator": "h", "prompt": "p", "image": "a.png", "seed": 1},
    ]
    files = {"manifest.jsonl": manifest_jsonl(rows), "a.png": png_bytes(), "b.png": png_bytes(color=(0, 0, 0))}
    msg = rejected(make_zip(tmp_path / "u.zip", files))
    assert "line 3: duplicate of line 1 (same generator, prompt and image)" in msg
    assert "line 4: duplicate of line 2 (same generator, prompt and seed 1)" in msg
    assert_nothing_stored(settings)


def test_a_manifest_that_is_not_utf8_is_refused(tmp_path, settings):
    text = "generator,prompt,image\ng,une photo de café,a.png\n".encode("latin-1")
    msg = rejected(make_zip(tmp_path / "u.zip", {"manifest.csv": text, "a.png": png_bytes()}))
    assert "line 2: manifest.csv is not UTF-8 text (byte 0xe9" in msg
    assert_nothing_stored(settings)


def test_an_unknown_generator_is_refused_when_the_study_is_closed_to_new_ones(tmp_path, settings):
    study = Study.objects.create(name="Fixed", slug="fixed", vote_kinds=["pairwise"], allow_new_generators=False)
    study.generators.add(Generator.objects.create(name="gen-0"))
    msg = rejected(make_zip(tmp_path / "u.zip", sample_files()), "--study", "fixed")
    assert "generator 'gen-1' is not in study 'fixed', which does not allow new generators" in msg
    assert Output.objects.count() == 0 and Image.objects.count() == 0 and Prompt.objects.count() == 0
    assert stored_files(settings) == []


def test_an_archive_over_the_size_limit_is_refused(tmp_path, settings):
    path = make_zip(tmp_path / "u.zip", sample_files())
    settings.ARENA_UPLOAD_MAX_BYTES = path.stat().st_size - 1
    msg = rejected(path)
    assert f"archive is {path.stat().st_size:,} bytes, over the limit of" in msg and "ARENA_UPLOAD_MAX_BYTES" in msg
    assert_nothing_stored(settings)


def test_one_bad_row_keeps_the_good_rows_out_too(tmp_path, settings):
    files = sample_files(2, 3)
    files["img/g1_p2.png"] = b"broken"
    msg = rejected(make_zip(tmp_path / "u.zip", files))
    assert "img/g1_p2.png is not an image" in msg
    assert_nothing_stored(settings)


def test_a_file_that_is_not_a_zip_is_refused(tmp_path, settings):
    path = tmp_path / "outputs.zip"
    path.write_bytes(b"this is not a zip")
    msg = rejected(path)
    assert "outputs.zip is not a valid .zip archive" in msg
    assert_nothing_stored(settings)


def test_bad_field_values_are_named(tmp_path, settings):
    rows = [{"generator": "", "prompt": "p", "image": "a.png", "seed": "abc", "questions": "Is it red?"}]
    msg = rejected(make_zip(tmp_path / "u.zip", {"manifest.jsonl": manifest_jsonl(rows), "a.png": png_bytes()}))
    assert "line 1: 'generator' is empty" in msg
    assert "line 1: 'seed' must be an integer, got 'abc'" in msg
    assert "line 1: 'questions' must be a list of non-empty strings" in msg
    assert_nothing_stored(settings)


# --------------------------------------------------------------------------- hardening


def animated(fmt: str) -> bytes:
    frames = [PILImage.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


@pytest.mark.parametrize("fmt,ext", [("PNG", "png"), ("WEBP", "webp")])
def test_an_animated_image_is_refused(tmp_path, settings, fmt, ext):
    files = {f"a.{ext}": animated(fmt), "manifest.jsonl": manifest_jsonl([{"generator": "g", "prompt": "p", "image": f"a.{ext}"}])}
    msg = rejected(make_zip(tmp_path / "u.zip", files))
    assert f"line 1: a.{ext} is animated (2 frames); upload a still image" in msg
    assert_nothing_stored(settings)


def test_a_symlinked_manifest_in_a_folder_is_refused_with_a_message(tmp_path, settings):
    folder = tmp_path / "up"
    folder.mkdir()
    real = tmp_path / "elsewhere.jsonl"
    real.write_bytes(manifest_jsonl([{"generator": "g", "prompt": "p", "image": "a.png"}]))
    (folder / "manifest.jsonl").symlink_to(real)
    (folder / "a.png").write_bytes(png_bytes())
    msg = rejected(folder)
    assert "manifest.jsonl in" in msg and "is a symbolic link; copy the file itself into the folder" in msg
    assert_nothing_stored(settings)


def test_a_symlinked_image_in_a_folder_is_refused_with_a_message(tmp_path, settings):
    folder = tmp_path / "up"
    folder.mkdir()
    (tmp_path / "secret.png").write_bytes(png_bytes())
    (folder / "a.png").symlink_to(tmp_path / "secret.png")
    (folder / "manifest.jsonl").write_bytes(manifest_jsonl([{"generator": "g", "prompt": "p", "image": "a.png"}]))
    msg = rejected(folder)
    assert "line 1: image file 'a.png' is a symbolic link" in msg
    assert_nothing_stored(settings)


def test_a_zip_with_two_entries_of_one_name_is_refused(tmp_path, settings):
    path = tmp_path / "u.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("manifest.jsonl", manifest_jsonl([{"generator": "g", "prompt": "p", "image": "a.png"}]))
        with pytest.warns(UserWarning):
            zf.writestr("manifest.jsonl", manifest_jsonl([{"generator": "h", "prompt": "p", "image": "a.png"}]))
        zf.writestr("a.png", png_bytes())
    msg = rejected(path)
    assert "archive has more than one entry named 'manifest.jsonl'; each file may appear once" in msg
    assert_nothing_stored(settings)


def test_a_zip_with_a_symbolic_link_is_refused(tmp_path, settings):
    path = tmp_path / "u.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("manifest.jsonl", manifest_jsonl([{"generator": "g", "prompt": "p", "image": "a.png"}]))
        link = zipfile.ZipInfo("a.png")
        link.external_attr = (0o120777 << 16)
        zf.writestr(link, "/etc/passwd")
    msg = rejected(path)
    assert "archive has symbolic links, which are not accepted: 'a.png'" in msg
    assert_nothing_stored(settings)


def test_a_manifest_over_the_row_cap_is_refused_at_the_first_row_past_it(tmp_path, settings):
    settings.ARENA_UPLOAD_MAX_ROWS = 3
    msg = rejected(make_zip(tmp_path / "u.zip", sample_files(n_generators=2, n_prompts=2)))
    assert "line 4: the manifest has more than 3 rows (ARENA_UPLOAD_MAX_ROWS); split it into several uploads" in msg
    assert_nothing_stored(settings)


def test_metadata_over_the_size_cap_is_refused(tmp_path, settings):
    settings.ARENA_MAX_METADATA_BYTES = 100
    rows = [{"generator": "g", "prompt": "p", "image": "a.png", "metadata": {"workflow": "n" * 200}}]  # '{"workflow": "' + 200 + '"}' = 216 bytes
    msg = rejected(make_zip(tmp_path / "u.zip", {"manifest.jsonl": manifest_jsonl(rows), "a.png": png_bytes()}))
    assert "line 1: 'metadata' is 216 bytes as JSON, over the limit of 100 (ARENA_MAX_METADATA_BYTES)" in msg
    assert_nothing_stored(settings)


def test_long_values_are_quoted_short_in_errors(tmp_path, settings):
    rows = [{"generator": "g", "prompt": "p", "image": "a.png", "seed": "9" * 5000 + "x"}]
    msg = rejected(make_zip(tmp_path / "u.zip", {"manifest.jsonl": manifest_jsonl(rows), "a.png": png_bytes()}))
    assert "line 1: 'seed' must be an integer, got '999" in msg and "(5,001 characters)" in msg
    assert "9" * 150 not in msg
    assert_nothing_stored(settings)


def test_a_large_manifest_is_inserted_in_batches(tmp_path, settings):
    rows, files = [], {}
    for i in range(3):
        files[f"{i}.png"] = png_bytes(color=(i, 2, 3))
    for g in range(5):
        for p in range(450):
            rows.append({"generator": f"g{g}", "prompt": f"prompt {p}", "image": f"{(g + p) % 3}.png"})
    files["manifest.jsonl"] = manifest_jsonl(rows)
    out = run_import(make_zip(tmp_path / "u.zip", files))
    assert "2250 output(s) imported" in out
    assert Output.objects.count() == 2250 and Prompt.objects.count() == 450 and Image.objects.count() == 3
    assert "0 output(s) imported; 2250 already present" in run_import(make_zip(tmp_path / "u.zip", files))
