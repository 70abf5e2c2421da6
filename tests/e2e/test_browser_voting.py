"""A new annotator runs a study in a real browser, with the keyboard only."""

import pytest

from arena.models import Vote
from tests.conftest import GENERATOR_NAMES

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

KEYS = {"likert": "4", "binary": "g", "pairwise": "ArrowLeft"}


def test_an_annotator_votes_all_three_kinds_with_the_keyboard_and_never_sees_a_generator(
    live_server, browser, make_study, annotator_user, tmp_path
):
    study = make_study(quota_per_annotator=40, reveal_after_vote=False, instructions="Judge the images carefully.")
    bodies = []
    page = browser.new_page(viewport={"width": 1280, "height": 900})

    def keep(response):
        if response.request.resource_type in ("document", "xhr", "fetch", "script"):
            try:
                bodies.append((response.url, response.text()))
            except Exception:
                pass

    page.on("response", keep)
    page.goto(f"{live_server.url}/vote/{study.slug}/")
    # anonymous -> login page, typed and submitted with the keyboard
    page.wait_for_selector("input[name=username]")
    page.keyboard.type(annotator_user.username)
    page.keyboard.press("Tab")
    page.keyboard.type("pw-annot-123")
    page.keyboard.press("Enter")
    page.wait_for_selector("#start")
    assert "Judge the images carefully." in page.content()
    page.wait_for_function("document.activeElement && document.activeElement.id === 'start'")  # autofocus
    page.keyboard.press("Enter")
    page.wait_for_selector("#task")
    # The keys work once the page's deferred scripts have run (they run before DOMContentLoaded).
    page.wait_for_load_state("domcontentloaded")

    kinds_done = []
    for n in range(1, 25):
        kind = page.get_attribute("#task", "data-kind")
        html = page.content().lower()
        for name in GENERATOR_NAMES:
            assert name not in html
        for url, body in bodies:
            for name in GENERATOR_NAMES:
                assert name not in body.lower(), f"{name} in {url}"
        page.keyboard.press(KEYS[kind])
        page.wait_for_function("n => document.querySelector('#progress').textContent.trim().startsWith(n + ' /')", arg=n)
        vote = Vote.objects.filter(annotator__user=annotator_user).order_by("-id").first()
        assert Vote.objects.filter(annotator__user=annotator_user).count() == n
        assert vote.kind == kind
        expected = {"likert": ("score", 4), "binary": ("score", 1), "pairwise": ("choice", "left")}[kind]
        assert getattr(vote, expected[0]) == expected[1]
        kinds_done.append(kind)
        if set(kinds_done) == {"likert", "binary", "pairwise"} and n >= 6:
            break
    assert set(kinds_done) == {"likert", "binary", "pairwise"}
    # the skip key moves on without storing a vote
    before = Vote.objects.count()
    first = page.get_attribute("input[name=assignment]", "value")
    page.keyboard.press("s")
    page.wait_for_function("a => document.querySelector('input[name=assignment]').value !== a", arg=first)
    assert Vote.objects.count() == before
    # an expired task: the refusal is shown and a fresh task takes its place
    from datetime import timedelta

    from django.utils import timezone

    from arena.models import Assignment

    stale = page.get_attribute("input[name=assignment]", "value")
    Assignment.objects.filter(pk=stale).update(expires_at=timezone.now() - timedelta(seconds=1))
    page.keyboard.press("s")
    page.wait_for_selector("#task .error")
    assert "expired" in page.inner_text("#task .error")
    assert page.get_attribute("input[name=assignment]", "value") != stale
    page.screenshot(path=str(tmp_path / "vote.png"))


def test_the_voting_page_fits_a_phone_screen(live_server, browser, make_study, annotator_user):
    study = make_study(kinds=("pairwise",))
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = ctx.new_page()
    page.goto(f"{live_server.url}/accounts/login/?next=/vote/{study.slug}/")
    page.fill("input[name=username]", annotator_user.username)
    page.fill("input[name=password]", "pw-annot-123")
    page.click("button[type=submit]")
    page.click("#start")
    page.wait_for_selector("#task img")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    for label in ("Left better", "Right better", "Tie", "Both bad"):
        box = page.get_by_role("button", name=label).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
    page.get_by_role("button", name="Right better").tap()
    page.wait_for_function("document.querySelector('#progress').textContent.trim().startsWith('1 /')")
    assert Vote.objects.get().choice == "right"
    ctx.close()
