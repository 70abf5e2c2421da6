"""The voting page in a real browser: blocks, buttons in view, reveal under the images, crowd end states."""

import re

import pytest

from arena.models import Assignment, Vote

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

KEYS = {"likert": "4", "binary": "g", "pairwise": "ArrowLeft"}
VIEWPORTS = {"desktop": {"width": 1366, "height": 768}, "phone": {"width": 390, "height": 844}}


def sign_in(page, live_server, user, slug):
    page.goto(f"{live_server.url}/accounts/login/?next=/vote/{slug}/")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", "pw-annot-123")
    page.click("button[type=submit]")
    page.wait_for_selector("#start")
    page.click("#start")
    page.wait_for_selector("#task")
    # The keys work once the page's deferred scripts have run (they run before DOMContentLoaded).
    page.wait_for_load_state("domcontentloaded")


def wait_progress(page, n):
    page.wait_for_function("n => document.querySelector('#progress').textContent.trim().startsWith(n + ' /')", arg=n)


def test_tasks_come_in_blocks_announced_by_one_line(live_server, browser, make_study, annotator_user):
    study = make_study(quota_per_annotator=12, block_size=4, reveal_after_vote=False)
    page = browser.new_page(viewport=VIEWPORTS["desktop"])
    sign_in(page, live_server, annotator_user, study.slug)
    kinds, notes = [], []
    for n in range(1, 13):
        kind = page.get_attribute("#task", "data-kind")
        kinds.append(kind)
        notes.append(page.locator("#block-note").count() == 1)
        if notes[-1]:
            assert page.locator("#block-note").inner_text().startswith("New set of tasks:")
        page.keyboard.press(KEYS[kind])
        wait_progress(page, n)
    runs = [len(list(g)) for _, g in __import__("itertools").groupby(kinds)]
    assert runs == [4, 4, 4] and len(set(kinds)) == 3
    # The note shows exactly when the kind changes (and on the first task).
    assert notes == [i == 0 or kinds[i] != kinds[i - 1] for i in range(12)]


@pytest.mark.parametrize("viewport", ["desktop", "phone"])
def test_every_answer_button_is_in_view_without_scrolling(live_server, browser, make_study, annotator_user, viewport, tmp_path):
    study = make_study(quota_per_annotator=12, block_size=1, reveal_after_vote=False)
    ctx = browser.new_context(viewport=VIEWPORTS[viewport], has_touch=viewport == "phone", is_mobile=viewport == "phone")
    page = ctx.new_page()
    sign_in(page, live_server, annotator_user, study.slug)
    seen = set()
    for n in range(1, 7):
        kind = page.get_attribute("#task", "data-kind")
        page.wait_for_function("() => [...document.querySelectorAll('#task .images img')].every(i => i.complete)")
        height = VIEWPORTS[viewport]["height"]
        for box in [b.bounding_box() for b in page.locator("#task form.answer .buttons button").all()]:
            assert box["y"] >= 0 and box["y"] + box["height"] <= height, (viewport, kind, box)
        assert page.evaluate("document.documentElement.scrollWidth") <= VIEWPORTS[viewport]["width"]
        if viewport == "phone":
            assert not page.locator("#task kbd").first.is_visible()  # no keyboard hints on a touch screen
        page.screenshot(path=str(tmp_path / f"{viewport}-{kind}.png"))
        seen.add(kind)
        page.locator(f'#task button[data-key="{KEYS[kind].lower() if len(KEYS[kind]) == 1 else KEYS[kind]}"]').click()
        wait_progress(page, n)
    assert seen == {"likert", "binary", "pairwise"}


def test_tap_to_zoom_and_a_hint_for_a_wrong_key(live_server, browser, make_study, annotator_user):
    study = make_study(kinds=("pairwise",), quota_per_annotator=5)
    page = browser.new_page(viewport=VIEWPORTS["desktop"])
    sign_in(page, live_server, annotator_user, study.slug)
    page.keyboard.press("q")
    page.wait_for_selector("#key-hint", state="visible")
    assert "← left better" in page.inner_text("#key-hint")
    assert Vote.objects.count() == 0
    page.locator("#task a.zoom").first.click()
    page.wait_for_selector("#zoom-view", state="visible")
    page.keyboard.press("Escape")
    page.wait_for_selector("#zoom-view", state="hidden")


def test_reveal_puts_the_names_under_the_voted_images_and_enter_goes_on(live_server, browser, make_study, annotator_user):
    study = make_study(kinds=("pairwise",), quota_per_annotator=5, reveal_after_vote=True)
    page = browser.new_page(viewport=VIEWPORTS["desktop"])
    sign_in(page, live_server, annotator_user, study.slug)
    first = re.search(r'name="assignment" value="([0-9a-f-]{36})"', page.content()).group(1)
    src_before = page.get_attribute("#task .images img", "src")
    page.keyboard.press("ArrowRight")
    page.wait_for_selector("#revealed")
    a = Assignment.objects.get(pk=first)
    captions = page.locator("#revealed figcaption").all_inner_texts()
    assert captions == [f"{a.output_left.generator.name} (left)", f"{a.output_right.generator.name} (right)"]
    assert page.get_attribute("#revealed img", "src") == src_before  # under the images just judged
    page.keyboard.press("Enter")
    page.wait_for_selector("#task form.answer")
    assert page.locator("#revealed").count() == 0
    assert re.search(r'name="assignment" value="([0-9a-f-]{36})"', page.content()).group(1) != first


def test_a_prolific_worker_who_runs_out_of_tasks_gets_a_code(live_server, browser, make_study):
    # Three outputs and a quota of ten: the pool runs dry after three answers.
    study = make_study(kinds=("binary",), generators=["g-one", "g-two", "g-three"], prompts=1, quota_per_annotator=10,
                       overlap_target=1, prolific_completion_url="https://app.prolific.com/submissions/complete?cc=DONE1")
    page = browser.new_page(viewport=VIEWPORTS["phone"])
    page.goto(f"{live_server.url}/vote/{study.slug}/?PROLIFIC_PID=worker-1&STUDY_ID=s&SESSION_ID=sess-1")
    page.click("#start")
    for n in range(1, 4):
        page.wait_for_selector("#task form.answer")
        page.click('#task button[value="good"]')
        wait_progress(page, n)
    page.wait_for_selector("#end")
    text = page.inner_text("#end")
    assert "We could not give you enough tasks" in text and study.unserved_code in text
    assert study.completion_code not in text
    link = page.get_attribute("#completion-link", "href")
    assert link == f"https://app.prolific.com/submissions/complete?cc={study.unserved_code}"
    # With a minimum of three answers the same worker has done enough for the completion code.
    study.completion_min_votes = 3
    study.save(update_fields=["completion_min_votes"])
    page.reload()
    page.wait_for_selector("#end")
    assert study.completion_code in page.inner_text("#completion-code")
    assert page.get_attribute("#completion-link", "href") == "https://app.prolific.com/submissions/complete?cc=DONE1"


def test_colleagues_with_accounts_never_see_prolific_buttons(live_server, browser, make_study, annotator_user):
    study = make_study(kinds=("binary",), quota_per_annotator=2,
                       prolific_completion_url="https://app.prolific.com/submissions/complete?cc=DONE1")
    page = browser.new_page(viewport=VIEWPORTS["desktop"])
    sign_in(page, live_server, annotator_user, study.slug)
    for n in range(1, 3):
        page.keyboard.press("g")
        wait_progress(page, n)
    page.wait_for_selector("#end")
    assert "You have completed this study." in page.inner_text("#end")
    assert page.locator("#completion-link").count() == 0 and "Prolific" not in page.content()
