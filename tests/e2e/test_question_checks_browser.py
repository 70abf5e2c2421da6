"""Question checks in a real browser: answered with the keyboard and with taps, then audited on the board."""

import os
from pathlib import Path

import pytest

from arena.models import Assignment, QuestionAnswer, Vote
from judging.models import OutputScore
from ratings.services import study_recompute
from tests.conftest import GENERATOR_NAMES
from tests.e2e.test_voting_page import VIEWPORTS, sign_in, wait_progress

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

QUESTIONS = {0: ["Is there a cube?", "Is the cube red?", "Is the cube on a glass table?"],
             1: ["Is there a cat?", "Is the cat asleep?"], 2: ["Is there a tree?", "Is it snowing?", "Is it night?", "Is there a moon?"]}
CATEGORIES = {0: "objects", 1: "animals", 2: "scenes"}


def shots_dir(tmp_path) -> Path:
    path = Path(os.environ.get("ARENA_SHOTS_DIR") or tmp_path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def question_study(make_study, **options):
    return make_study(kinds=("questions",), prompts=3, questions=QUESTIONS, categories=CATEGORIES, reveal_after_vote=False,
                      **options)


def stored(assignment_id) -> list[bool]:
    return list(QuestionAnswer.objects.filter(vote__assignment_id=assignment_id).order_by("question_index")
                .values_list("answer", flat=True))


def images_loaded(page) -> None:
    page.wait_for_function("() => [...document.querySelectorAll('#task .images img')].every(i => i.complete && i.naturalWidth)")


def current_index(page) -> int | None:
    return page.evaluate("() => { const li = document.querySelector('#task li.qcheck.current'); return li ? +li.dataset.index : null; }")


def test_question_checks_answered_with_the_keyboard(live_server, browser, make_study, annotator_user, tmp_path):
    study = question_study(make_study, quota_per_annotator=4)
    page = browser.new_page(viewport=VIEWPORTS["desktop"])
    sign_in(page, live_server, annotator_user, study.slug)
    assert page.get_attribute("#task", "data-kind") == "questions"
    images_loaded(page)
    page.screenshot(path=str(shots_dir(tmp_path) / "task-desktop-1366x768.png"))
    # Enter before every question has an answer sends nothing and says which keys work.
    page.keyboard.press("Enter")
    page.wait_for_selector("#key-hint", state="visible")
    assert "Y yes, N no" in page.inner_text("#key-hint") and Vote.objects.count() == 0
    expected = {}
    for n in range(1, 5):
        assignment = page.get_attribute('#task input[name="assignment"]', "value")
        k = page.locator("#task li.qcheck").count()
        want = [(i + n) % 3 != 0 for i in range(k)]
        assert current_index(page) == 0
        if n == 1:
            # A wrong first answer, corrected: N, then up, then Y.
            page.keyboard.press("n")
            assert current_index(page) == 1
            page.keyboard.press("ArrowUp")
            assert current_index(page) == 0
            page.keyboard.press("y" if want[0] else "n")
            assert current_index(page) == 1
            keys = want[1:]
        else:
            keys = want
        for i, yes in enumerate(keys):
            page.keyboard.press("y" if yes else "n")
        assert current_index(page) is None  # every question answered: Enter sends
        # The buttons are on screen without scrolling at 1366 x 768.
        for box in [b.bounding_box() for b in page.locator("#task li.qcheck label, #task .buttons button").all()]:
            assert 0 <= box["y"] and box["y"] + box["height"] <= 768 and 0 <= box["x"] and box["x"] + box["width"] <= 1366
        page.keyboard.press("Enter")
        wait_progress(page, n)
        expected[assignment] = want
    for assignment, want in expected.items():
        assert stored(assignment) == want
    assert Vote.objects.filter(kind="questions").count() == 4


def test_question_checks_answered_with_taps_on_a_phone_then_audited_on_the_board(
    live_server, browser, make_study, annotator_user, researcher, tmp_path
):
    study = question_study(make_study, quota_per_annotator=6)
    width, height = VIEWPORTS["phone"]["width"], VIEWPORTS["phone"]["height"]
    ctx = browser.new_context(viewport=VIEWPORTS["phone"], has_touch=True, is_mobile=True)
    page = ctx.new_page()
    sign_in(page, live_server, annotator_user, study.slug)
    cast: dict[tuple[int, int], bool] = {}
    for n in range(1, 7):
        assignment = page.get_attribute('#task input[name="assignment"]', "value")
        html = page.content().lower()
        assert not any(name in html for name in GENERATOR_NAMES)
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        assert not page.locator("#task kbd").first.is_visible()
        if n == 1:
            images_loaded(page)
            page.screenshot(path=str(shots_dir(tmp_path) / "task-phone-390x844.png"), full_page=True)
        items = page.locator("#task li.qcheck")
        k = items.count()
        want = [(i * 7 + n) % 4 < 2 for i in range(k)]
        for i, yes in enumerate(want):
            label = items.nth(i).locator("label.yes" if yes else "label.no")
            label.scroll_into_view_if_needed()
            box = label.bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= width and 0 <= box["y"] and box["y"] + box["height"] <= height
            assert box["height"] >= 40  # a finger-sized target
            if n == 1 and i == k - 1:
                # Send with a question left open stores nothing.
                page.locator("#task button.send").tap()
                assert Vote.objects.count() == 0
            label.tap()
        send = page.locator("#task button.send")
        send.scroll_into_view_if_needed()
        box = send.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= width and box["y"] + box["height"] <= height
        send.tap()
        wait_progress(page, n)
        oid = Assignment.objects.get(pk=assignment).output_left_id
        assert stored(assignment) == want
        cast.update({(oid, i): yes for i, yes in enumerate(want)})

    # VQAScore's P(yes) for the outputs answered, set here: every third answer contradicted, and at
    # least one yes and one no of people's, so both error classes occur.
    keys = sorted(cast)
    flip = {k for j, k in enumerate(keys) if j % 3 == 0}
    flip |= {next(k for k in keys if cast[k]), next(k for k in keys if not cast[k])}
    model = {k: cast[k] != (k in flip) for k in keys}
    for a in Assignment.objects.filter(study=study, answered_at__isnull=False).select_related("output_left__prompt"):
        o = a.output_left
        probs = [0.9 if model[(o.pk, i)] else 0.2 for i in range(len(o.prompt.questions))]
        OutputScore.objects.create(output=o, scorer="vqa", model_id="vqa:test", value=0.5, details={
            "questions": [{"question": q, "p_yes": p} for q, p in zip(o.prompt.questions, probs)]})
    study_recompute(study_id=study.pk)
    # One annotator: people's answer is theirs.
    hallucinated = sum(model[key] and not yes for key, yes in cast.items())
    missed = sum(yes and not model[key] for key, yes in cast.items())
    right = sum(model[key] == yes for key, yes in cast.items())
    assert hallucinated and missed

    board = browser.new_page(viewport=VIEWPORTS["desktop"])
    board.goto(f"{live_server.url}/accounts/login/?next=/leaderboard/{study.slug}/")
    board.fill("input[name=username]", researcher.username)
    board.fill("input[name=password]", "pw-research-123")
    board.click("button[type=submit]")
    board.wait_for_selector("#question-checks")
    row = board.locator('#question-audit tr[data-source="VQAScore"][data-cut="all"]')
    assert int(row.locator(".halluc").inner_text()) == hallucinated
    assert int(row.locator(".missed").inner_text()) == missed
    assert int(row.locator("td.items").inner_text()) == len(cast)
    assert float(row.locator(".acc").inner_text()) == pytest.approx(right / len(cast), abs=0.005)
    board.locator("#question-checks").scroll_into_view_if_needed()
    board.locator("#question-checks").screenshot(path=str(shots_dir(tmp_path) / "board-desktop-1366x768.png"))
    board.screenshot(path=str(shots_dir(tmp_path) / "board-viewport-desktop-1366x768.png"))
    board.set_viewport_size(VIEWPORTS["phone"])
    board.locator("#question-checks").scroll_into_view_if_needed()
    assert board.evaluate("document.documentElement.scrollWidth") <= width
    board.screenshot(path=str(shots_dir(tmp_path) / "board-phone-390x844.png"))
    board.locator("#question-checks").screenshot(path=str(shots_dir(tmp_path) / "board-section-phone-390x844.png"))
