"""Staff run a study from the browser: upload, set up, vote; an impossible quota is refused; exports download."""

import io
import json
import os
import re
import time
from pathlib import Path

import pytest

from arena.models import Flag, Study, Vote
from tests.conftest import make_zip, manifest_jsonl, png_bytes, reference_data

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SIZES = {"desktop": (1366, 768), "phone": (390, 844)}


def _shots(tmp_path) -> Path:
    d = Path(os.environ.get("ARENA_SCREENSHOT_DIR") or tmp_path / "screens")
    d.mkdir(parents=True, exist_ok=True)
    return d


def _login(page, base, user, password, next_url="/"):
    page.goto(f"{base}/accounts/login/?next={next_url}")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_load_state()


def _screens(browser, base, user, password, paths: dict[str, str], out: Path) -> list[Path]:
    """Each page at 1366×768 and 390×844, full page; also asserts nothing scrolls sideways."""
    taken = []
    for size, (w, h) in SIZES.items():
        ctx = browser.new_context(viewport={"width": w, "height": h})
        page = ctx.new_page()
        _login(page, base, user, password)
        for name, path in paths.items():
            page.goto(base + path)
            page.evaluate("window.scrollTo(0, document.body.scrollHeight)")  # lazy thumbnails load
            page.wait_for_load_state("networkidle")
            page.evaluate("window.scrollTo(0, 0)")
            if name != "api":
                wide = page.evaluate("""() => [...document.querySelectorAll('body *')]
                    .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1 && !e.closest('.table-wrap'))
                    .slice(0, 3).map(e => e.tagName + '.' + e.className + '#' + e.id)""")
                assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), (name, size, wide)
            target = out / f"{name}-{size}.png"
            page.screenshot(path=str(target), full_page=name != "api")
            taken.append(target)
        ctx.close()
    return taken


def test_staff_upload_outputs_set_up_a_study_and_an_annotator_votes_in_it(live_server, browser, admin_user, tmp_path):
    reference_data()  # the criteria a fresh install has (an earlier transactional test may have flushed them)
    gens = ["fresh-gen-a", "fresh-gen-b", "fresh-gen-c"]
    rows, files = [], {}
    for g, gen in enumerate(gens):
        for p in range(3):
            name = f"img/{g}-{p}.png"
            files[name] = png_bytes(color=(30 + 70 * g, 40 * p, 90), size=(48, 32))
            rows.append({"generator": gen, "prompt": f"a lighthouse in fog, take {p}", "image": name, "category": "scenes"})
    files["manifest.jsonl"] = manifest_jsonl(rows)
    archive = make_zip(tmp_path / "fresh.zip", files)

    page = browser.new_page(viewport={"width": 1366, "height": 768})
    _login(page, live_server.url, admin_user, "pw-admin-123", "/staff/uploads/")
    page.set_input_files("input[type=file]", str(archive))
    page.click("#upload-form button[type=submit]")
    page.wait_for_selector("[data-status=done]", timeout=30000)
    assert page.inner_text("#rows-imported") == "9"

    t0 = time.perf_counter()
    page.goto(f"{live_server.url}/staff/studies/new/")
    page.fill("input[name=name]", "Lighthouses")
    page.fill("input[name=slug]", "lighthouses")
    page.fill("textarea[name=instructions]", "Pick the image you find more beautiful.")
    page.get_by_role("checkbox", name="Pairwise", exact=True).check()
    page.get_by_role("checkbox", name="Aesthetics", exact=True).check()
    for gen in gens:
        page.get_by_role("checkbox", name=re.compile(f"^{gen} \\(3 outputs\\)")).check()
    page.fill("input[name=quota_per_annotator]", "5")
    # 3 prompts x 3 pairs of generators = 9 pairwise items for one criterion.
    page.wait_for_function("document.querySelector('#tasks-per-annotator') && "
                           "document.querySelector('#tasks-per-annotator').textContent.trim() === '9'")
    assert page.locator("#preview-ok").is_visible()
    page.click("#save")
    page.wait_for_url(re.compile(r"/staff/studies/lighthouses/edit/$"))
    page.goto(f"{live_server.url}/vote/lighthouses/")
    if page.locator("#start").count():
        page.click("#start")
    page.wait_for_selector("#task form.answer button[name=answer]")
    page.locator("#task form.answer button[name=answer]:not(.skip)").first.click()
    deadline = time.monotonic() + 15
    while not Vote.objects.filter(study__slug="lighthouses").exists():
        assert time.monotonic() < deadline, "the vote was not stored"
        time.sleep(0.05)
    elapsed = time.perf_counter() - t0
    print(f"\nsetup-to-first-vote: {elapsed:.1f} s (setup page opened → first vote stored)")
    study = Study.objects.get(slug="lighthouses")
    vote = Vote.objects.get(study=study)
    assert vote.kind == "pairwise" and {vote.generator_left.name, vote.generator_right.name} <= set(gens)
    assert study.instructions == "Pick the image you find more beautiful."

    Flag.objects.create(output=vote.output_left, annotator=vote.annotator, assignment=vote.assignment, reason="broken",
                        note="half of the image is grey")
    out = _shots(tmp_path)
    _screens(browser, live_server.url, admin_user, "pw-admin-123", {
        "setup-new": "/staff/studies/new/", "setup-edit": "/staff/studies/lighthouses/edit/",
        "try": "/staff/studies/lighthouses/try/?seed=1", "overview": "/studies/lighthouses/",
        "flags": "/staff/studies/lighthouses/flags/", "studies": "/leaderboard/", "board": "/leaderboard/lighthouses/",
        "not-found": "/no/such/page/", "api": "/api/docs/",
    }, out)


def test_an_impossible_quota_is_refused_live_and_on_save(live_server, browser, admin_user, make_study, outsider, tmp_path):
    make_study(prompts=2, kinds=("likert",), slug="source")
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    _login(page, live_server.url, admin_user, "pw-admin-123", "/staff/studies/new/")
    page.fill("input[name=name]", "Too much")
    page.fill("input[name=slug]", "too-much")
    page.get_by_role("checkbox", name="Rating 1–5", exact=True).check()
    page.get_by_role("checkbox", name="Aesthetics", exact=True).check()
    page.get_by_role("checkbox", name=re.compile(r"^zebrafusion-xl \(2 outputs\)")).check()
    page.fill("input[name=quota_per_annotator]", "3")
    page.wait_for_selector("#refusal")
    assert "A quota of 3 tasks is more than the 2 one annotator can get" in page.inner_text("#refusal")
    page.screenshot(path=str(_shots(tmp_path) / "setup-refusal-desktop.png"), full_page=True)
    page.click("#save")
    page.wait_for_selector("#field-quota_per_annotator .error")
    assert "more than the 2 one annotator can get" in page.inner_text("#field-quota_per_annotator")
    assert not Study.objects.filter(slug="too-much").exists()

    # A page someone may not open says why and links back.
    other = browser.new_page(viewport={"width": 390, "height": 844})
    _login(other, live_server.url, outsider, "pw-outsider-123", "/staff/studies/new/")
    other.goto(f"{live_server.url}/staff/studies/new/")
    assert "You cannot open this page" in other.content()
    other.screenshot(path=str(_shots(tmp_path) / "forbidden-phone.png"), full_page=True)


def test_exports_download_from_the_boards_buttons_and_read_back(live_server, browser, make_study, researcher, annotator_user, tmp_path):
    import pyarrow.parquet as pq

    from arena.voting import annotator_for_user, vote_record
    from tests.conftest import task_next

    # Blocks of three tasks, so ten tasks hold both kinds.
    study = make_study(prompts=2, kinds=("pairwise", "likert"), quota_per_annotator=12, block_size=3)
    annotator = annotator_for_user(annotator_user)
    for _ in range(10):
        a, _ = task_next(study=study, annotator=annotator)
        vote_record(assignment_id=a.pk, annotator=annotator, answer="left" if a.kind == "pairwise" else "4", study=study)
    n_votes = Vote.objects.filter(study=study).count()
    n_pairs = Vote.objects.filter(study=study, kind="pairwise").count()
    assert n_pairs > 0

    page = browser.new_page(viewport={"width": 1366, "height": 768}, accept_downloads=True)
    _login(page, live_server.url, researcher, "pw-research-123", f"/leaderboard/{study.slug}/")
    got = {}
    for label in ("CSV", "JSONL", "Parquet", "Aesthetics"):
        with page.expect_download() as info:
            page.locator("#exports").get_by_role("link", name=label, exact=True).click()
        path = tmp_path / info.value.suggested_filename
        info.value.save_as(path)
        got[label] = path
    page.screenshot(path=str(_shots(tmp_path) / "board-exports-desktop.png"))

    votes = pq.read_table(got["Parquet"])
    assert votes.num_rows == n_votes
    assert sorted(set(votes.column("kind").to_pylist())) == ["likert", "pairwise"]
    assert len(got["CSV"].read_text().strip().splitlines()) == n_votes + 1
    assert len([json.loads(line) for line in got["JSONL"].read_text().splitlines() if line]) == n_votes
    pairs = pq.read_table(io.BytesIO(got["Aesthetics"].read_bytes()))
    assert pairs.num_rows == n_pairs
