"""Staff see the judges section on the board, the judge runs on the jobs page and the rubrics
in the study setup, on a desktop and a phone."""

import pytest

from arena.models import Prompt
from judging import judge_backends
from judging.judge_runs import judge_run_enqueue
from ratings.services import study_recompute
from tests.e2e.test_browser_study_setup import SIZES, _login, _shots
from tests.judging.judge_server import JudgeServer
from tests.judging.test_judges_http import QUESTIONS, configure, fair, first_always, human_votes

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_the_judges_section_reads_on_a_desktop_and_a_phone(live_server, browser, admin_user, make_study, settings, monkeypatch, tmp_path):
    monkeypatch.setattr(judge_backends, "BACKOFF_SECONDS", 0.01)
    study = make_study(prompts=2, overlap_target=4)
    Prompt.objects.filter(text__endswith="prompt number 0").update(questions=QUESTIONS)
    human_votes(study)
    with JudgeServer(fair, model="qwen2.5-vl-7b") as s1, JudgeServer(first_always, model="llava-1.6-7b") as s2:
        configure(settings, {"name": "qwen-vl", "url": s1.url, "model": "qwen2.5-vl-7b", "concurrency": 4},
                  {"name": "llava", "url": s2.url, "model": "llava-1.6-7b", "retries": 0})
        for name in ("qwen-vl", "llava"):
            judge_run_enqueue(study=study, judge=name)  # eager: runs when the enqueue commits
    study_recompute(study_id=study.pk)
    out = _shots(tmp_path)
    for size, (w, h) in SIZES.items():
        ctx = browser.new_context(viewport={"width": w, "height": h})
        page = ctx.new_page()
        _login(page, live_server.url, admin_user, "pw-admin-123")
        page.goto(f"{live_server.url}/leaderboard/{study.slug}/")
        section = page.locator("#judges")
        section.wait_for()
        assert section.locator('td[data-judge="llava"][data-figure="first_rate"]').inner_text().startswith("1.000")
        assert "0 of 12 pairs" in section.locator('td[data-judge="llava"][data-figure="consistency"]').inner_text()
        assert section.locator('details[data-judge="qwen-vl"] tbody tr').count() == 4
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), size
        section.scroll_into_view_if_needed()
        section.screenshot(path=str(out / f"judges-section-{size}.png"))
        page.goto(f"{live_server.url}/staff/studies/{study.slug}/judges/")
        page.locator("#judge-runs").wait_for()
        assert page.locator("textarea").count() == 1
        page.screenshot(path=str(out / f"judge-rubrics-{size}.png"), full_page=True)
        page.goto(f"{live_server.url}/staff/jobs/")
        page.locator('#judge-runs tr[data-judge-run]').first.wait_for()
        page.locator("#judge-runs").screenshot(path=str(out / f"judge-runs-{size}.png"))
        ctx.close()
