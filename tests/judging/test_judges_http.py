"""MLLM judges through an OpenAI-compatible endpoint: a small server started here checks every
request and answers with scripted verdicts, one judge fair, one that always picks the first image."""

import random
import re
from collections import Counter, defaultdict

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import cohen_kappa_score

from arena.models import Annotator, Output, Prompt, Vote
from arena.voting import vote_record
from tests.conftest import task_next
from judging import judge_backends
from judging.judge_runs import judge_run_enqueue
from judging.models import JudgeReport, JudgeRun, JudgeVote, ScoreJob
from judging.selectors import judge_question_answers
from ratings.models import LeaderboardResult
from ratings.services import study_recompute
from tests.conftest import GENERATOR_NAMES, api_client_for, client_for
from tests.judging.judge_server import JudgeServer, red

pytestmark = pytest.mark.django_db

QUESTIONS = ["Is there a shape?", "Is the shape red?"]


def figures(html: str, judge: str) -> dict[str, str]:
    """The text of each figure cell of the judge's column in the agreement table."""
    table = re.search(r'<table class="grid" id="judge-agreement">(.*?)</table>', html, re.S).group(1)
    cells = re.findall(r'<td class="num" data-judge="%s" data-figure="(\w+)"[^>]*>(.*?)</td>' % re.escape(judge), table, re.S)
    return {k: " ".join(re.sub(r"<[^>]+>", " ", v).split()) for k, v in cells}


def gen_index(image) -> int:
    return int((red(image) - 10) // 50)


def fair(call):
    """Prefers the redder image (the later generator), in either order; asked a question, it
    first forgets the JSON and gives it when asked again."""
    g = [gen_index(im) for im in call.images]
    if call.kind == "likert":
        return f"Clean, flat colour.\n{{\"score\": {1 + g[0]}}}"
    if call.kind == "binary":
        return '{"verdict": "%s"}' % ("good" if g[0] >= 2 else "bad")
    if call.kind == "pairwise":
        return 'The first is warmer.\n{"choice": "first"}' if g[0] > g[1] else 'The second.\n{"choice": "second"}'
    if not call.retry:
        return "It looks like yes to me."
    return '{"answer": "%s"}' % ("yes" if g[0] >= 1 else "no")


def first_always(call):
    """Position-biased: always the first image; its good/bad answers never parse."""
    if call.kind == "pairwise":
        return 'I prefer the first one. {"choice": "first"}'
    if call.kind == "likert":
        return '{"score": 3}'
    if call.kind == "binary":
        return "good, I'd say"
    return '{"answer": "yes"}'


def human_votes(study, n_annotators=4, per=24, seed=7):
    """People mostly prefer the later generator (noise 20 %); ratings and good/bad follow it."""
    rng = random.Random(seed)
    order = {name: i for i, name in enumerate(GENERATOR_NAMES)}
    for _ in range(n_annotators):
        annotator = Annotator.objects.create()
        for _ in range(per):
            a, _ = task_next(study=study, annotator=annotator, ahead=0)
            if a is None:
                break
            gl = order[a.output_left.generator.name]
            if a.kind == "pairwise":
                gr = order[a.output_right.generator.name]
                answer = "left" if gl > gr else "right"
                if rng.random() < 0.2:
                    answer = rng.choice(["left", "right", "tie"])
            elif a.kind == "likert":
                answer = str(min(5, max(1, 1 + gl + rng.choice([0, 0, 1, -1]))))
            else:
                answer = "good" if gl >= 2 else "bad"
            vote_record(study=study, assignment_id=a.pk, annotator=annotator, answer=answer)


@pytest.fixture
def study(make_study):
    s = make_study(prompts=2, overlap_target=4)
    Prompt.objects.filter(text__endswith="prompt number 0").update(questions=QUESTIONS)
    return s


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch):
    monkeypatch.setattr(judge_backends, "BACKOFF_SECONDS", 0.01)


def configure(settings, *judges):
    settings.ARENA_JUDGE_URL = settings.ARENA_JUDGE_MODEL = ""
    settings.ARENA_JUDGES = list(judges)


def run_judge(study, name, captured, **kw):
    with captured(execute=True):
        run = judge_run_enqueue(study=study, judge=name, **kw)
    run.refresh_from_db()
    run.job.refresh_from_db()
    return run


def report(study, name):
    data = JudgeReport.objects.get(study=study, criterion=study.criteria.first()).data
    return next(j for j in data["judges"] if j["name"] == name)


def expected_pairwise_accuracy(study, judged_sign):
    """Tie-calibrated accuracy by hand: the judge's verdicts are -1, 0 or +1, so the only
    thresholds are 0 (verdicts as they are) and 1 (everything a tie); the better one counts."""
    human, judge = [], []
    for v in Vote.objects.filter(study=study, kind="pairwise"):
        human.append({"left": 1, "right": -1, "tie": 0}[v.choice])
        judge.append(judged_sign(v))
    human, judge = np.array(human), np.array(judge)
    return max(np.mean(human == judge), np.mean(human == 0)), len(human)


def test_two_judges_answer_every_task_and_the_board_reports_their_agreement_and_position_bias(
    settings, study, monkeypatch, django_capture_on_commit_callbacks, researcher,
):
    monkeypatch.setenv("FAIR_KEY", "sekrit")
    human_votes(study)
    study_recompute(study_id=study.pk)
    with JudgeServer(fair, model="fair-vl", key="sekrit") as s_fair, JudgeServer(first_always, model="lazy-vl") as s_lazy:
        configure(settings,
                  {"name": "fair", "backend": "http", "url": s_fair.url, "model": "fair-vl", "api_key_env": "FAIR_KEY", "concurrency": 3},
                  {"name": "lazy", "url": s_lazy.url, "model": "lazy-vl", "retries": 0})
        fair_run = run_judge(study, "fair", django_capture_on_commit_callbacks)
        lazy_run = run_judge(study, "lazy", django_capture_on_commit_callbacks)
        assert s_fair.problems == [] and s_lazy.problems == []
        # 2 prompts x 6 pairs judged in both orders, 8 ratings, 8 good/bad, 4 outputs x 2 questions
        pairs, outputs, questions = 12, 8, 8
        assert fair_run.job.status == "done", fair_run.job.message
        assert lazy_run.job.status == "done", lazy_run.job.message
        # The fair judge's questions parse only when asked again: one retry each.
        assert len(s_fair.calls) == 2 * pairs + outputs + outputs + 2 * questions
        assert len(s_lazy.calls) == 2 * pairs + outputs + 2 * outputs + questions
        assert fair_run.verdicts == lazy_run.verdicts == pairs + 2 * outputs + questions
        assert fair_run.failures == 0 and lazy_run.failures == outputs
        assert fair_run.prompt_tokens == sum(100 + 50 * len(c.images) for c in s_fair.calls)

        # Running again judges nothing twice.
        before = len(s_fair.calls)
        again = run_judge(study, "fair", django_capture_on_commit_callbacks)
        assert again.job.status == "done" and again.verdicts == 0 and len(s_fair.calls) == before

    lazy_votes = JudgeVote.objects.filter(judge="lazy")
    failed = lazy_votes.filter(failed=True)
    assert failed.count() == outputs and set(failed.values_list("kind", flat=True)) == {"binary"}
    assert all(v.score is None and "good, I'd say" in v.raw_text and "asked again" in v.raw_text for v in failed)
    lazy_pairs = lazy_votes.filter(kind="pairwise")
    assert all(not v.consistent and v.choice == "tie" and v.choice_first_order == "left" and v.choice_second_order == "right"
               for v in lazy_pairs)
    fair_pairs = JudgeVote.objects.filter(judge="fair", kind="pairwise")
    assert all(v.consistent for v in fair_pairs)
    # Human numbers never see a judge verdict.
    assert Vote.objects.filter(study=study).count() == sum(LeaderboardResult.objects.get(study=study, category="").data["totals"].values())

    # Questions: the other audit reads them through one selector.
    answers = judge_question_answers(study=study)
    fair_answers = {(o, q): yes for j, o, q, yes in answers if j == "fair"}
    assert len(fair_answers) == questions
    for v in JudgeVote.objects.filter(judge="fair", kind="question").select_related("output__generator"):
        assert fair_answers[(v.output_id, v.question_index)] == (GENERATOR_NAMES.index(v.output.generator.name) >= 1)

    lazy = report(study, "lazy")
    assert lazy["position"]["first_picks"] == lazy["position"]["decisive"] == 2 * pairs
    assert lazy["position"]["first_rate"]["value"] == 1.0
    assert lazy["position"]["consistent"] == 0 and lazy["position"]["pairs"] == pairs
    assert lazy["position"]["consistency"]["value"] == 0.0
    assert lazy["failures"] == outputs
    fair_r = report(study, "fair")
    assert fair_r["position"]["consistency"]["value"] == 1.0 and fair_r["position"]["first_rate"]["n"] == 2 * pairs
    assert fair_r["position"]["first_picks"] == pairs  # the redder image is shown first in one of the two orders

    # Agreement figures, computed here from the votes and the scripts, not from the judge's rows.
    order = {name: i for i, name in enumerate(GENERATOR_NAMES)}

    def fair_sign(v):
        return int(np.sign(order[v.generator_left.name] - order[v.generator_right.name]))

    acc, n = expected_pairwise_accuracy(study, fair_sign)
    assert fair_r["pairwise_accuracy"]["value"] == pytest.approx(acc) and fair_r["pairwise_accuracy"]["n"] == n
    lazy_acc, _ = expected_pairwise_accuracy(study, lambda v: 0)
    assert lazy["pairwise_accuracy"]["value"] == pytest.approx(lazy_acc)

    # Cohen's kappa against the human majority per item (scikit-learn on the same items).
    def majority(counter):
        top = counter.most_common(2)
        return None if len(top) == 2 and top[0][1] == top[1][1] else top[0][0]

    ratings = defaultdict(Counter)
    for v in Vote.objects.filter(study=study, kind="likert").select_related("generator_left"):
        ratings[v.output_left_id][v.score] += 1
    items = [(o, majority(c)) for o, c in ratings.items() if majority(c) is not None]
    gen_of = {v.output_left_id: order[v.generator_left.name] for v in Vote.objects.filter(study=study, kind="likert").select_related("generator_left")}
    expected = cohen_kappa_score([m for _, m in items], [1 + gen_of[o] for o, _ in items])
    assert fair_r["kappa"]["likert"]["value"] == pytest.approx(expected) and fair_r["kappa"]["likert"]["n"] == len(items)
    pairs_h, sign_of = defaultdict(Counter), {}
    for v in Vote.objects.filter(study=study, kind="pairwise").select_related("generator_left", "generator_right"):
        key = tuple(sorted((v.output_left_id, v.output_right_id)))
        h = {"left": 1, "right": -1, "tie": 0}[v.choice]
        pairs_h[key][h if v.output_left_id == key[0] else -h] += 1
        sign_of[key] = fair_sign(v) if v.output_left_id == key[0] else -fair_sign(v)
    keys = [k for k in pairs_h if majority(pairs_h[k]) is not None]
    # Each pair in both orientations: (human, judge) and (-human, -judge).
    h = [x for k in keys for x in (majority(pairs_h[k]), -majority(pairs_h[k]))]
    j = [x for k in keys for x in (sign_of[k], -sign_of[k])]
    assert fair_r["kappa"]["pairwise"]["value"] == pytest.approx(cohen_kappa_score(h, j))
    assert fair_r["kappa"]["pairwise"]["n"] == len(keys)
    assert lazy["kappa"]["pairwise"]["value"] == pytest.approx(cohen_kappa_score(h, [0] * len(h)))

    # Rank correlation of the judge's ranking with the people's Bradley-Terry.
    board = LeaderboardResult.objects.get(study=study, criterion=study.criteria.first(), category="").data
    human_bt = {r["name"]: r["bt"] for r in board["generators"]}
    names = [n for n in GENERATOR_NAMES if human_bt.get(n) is not None]
    assert fair_r["correlation"]["spearman"]["value"] == pytest.approx(sps.spearmanr([order[n] for n in names], [human_bt[n] for n in names]).statistic)
    assert fair_r["correlation"]["kendall"]["value"] == pytest.approx(sps.kendalltau([order[n] for n in names], [human_bt[n] for n in names]).statistic)
    assert [r["name"] for r in fair_r["ranking"]] == list(reversed(GENERATOR_NAMES))

    # The board page and the JSON API show it.
    page = client_for(researcher).get(f"/leaderboard/{study.slug}/")
    lazy_cells = figures(page.content.decode(), "lazy")
    assert lazy_cells["first_rate"].startswith("1.000") and "24 of 24" in lazy_cells["first_rate"]
    assert lazy_cells["consistency"].startswith("0.000") and "0 of 12 pairs" in lazy_cells["consistency"]
    assert lazy_cells["failures"].startswith("8")
    assert figures(page.content.decode(), "fair")["pairwise_accuracy"].startswith(f"{acc:.3f}")
    api = api_client_for(researcher).get(f"/api/studies/{study.slug}/leaderboard/").json()
    assert {j["name"] for j in api["judges"]["judges"]} == {"fair", "lazy"}


def test_a_sample_run_judges_the_first_tasks_people_voted_on_and_the_full_run_does_the_rest(
    settings, study, django_capture_on_commit_callbacks,
):
    human_votes(study, n_annotators=1, per=6)
    voted = {(v.kind, tuple(sorted(filter(None, (v.output_left_id, v.output_right_id))))) for v in Vote.objects.filter(study=study)}
    with JudgeServer(fair, model="fair-vl") as server:
        configure(settings, {"name": "fair", "url": server.url, "model": "fair-vl"})
        sample = run_judge(study, "fair", django_capture_on_commit_callbacks, sample=5)
        assert sample.job.status == "done" and sample.verdicts == 5 and sample.job.total == 5
        judged = {(v.kind, tuple(filter(None, (v.output_id, v.output_b_id)))) for v in JudgeVote.objects.all()}
        assert judged <= voted  # what people voted on comes first
        assert report(study, "fair")["sample"] == 5
        full = run_judge(study, "fair", django_capture_on_commit_callbacks)
        assert full.job.status == "done" and full.verdicts == 36 - 5
        assert JudgeVote.objects.count() == 36


def test_a_run_that_fails_midway_shows_nothing_and_the_next_run_resumes_it(settings, study, django_capture_on_commit_callbacks):
    budget = {"left": 30}

    def flaky(call):
        budget["left"] -= 1
        return fair(call) if budget["left"] >= 0 else 503

    with JudgeServer(flaky, model="fair-vl") as server:
        configure(settings, {"name": "fair", "url": server.url, "model": "fair-vl", "retries": 1, "concurrency": 1})
        run = run_judge(study, "fair", django_capture_on_commit_callbacks)
        assert run.job.status == "failed"
        assert "HTTP 503" in run.job.message and "2 tries" in run.job.message and "kept for the next run" in run.job.message
        kept = JudgeVote.objects.count()
        assert 0 < kept < 36
        assert not JudgeReport.objects.filter(study=study).exists() or JudgeReport.objects.get(study=study).data["judges"] == []
        budget["left"] = 10_000
        again = run_judge(study, "fair", django_capture_on_commit_callbacks)
        assert again.job.status == "done" and again.verdicts == 36 - kept
        shown = report(study, "fair")
        assert shown["verdicts"] + shown["questions"] == 36  # this criterion's tasks and the questions


@pytest.mark.parametrize("answer, expected", [
    (500, "answered HTTP 500"),
    (401, "answered HTTP 401"),
    (2.0, "gave no answer within 1 s"),
])
def test_an_endpoint_that_fails_is_a_job_error_naming_the_setting_and_the_response(
    settings, study, django_capture_on_commit_callbacks, answer, expected,
):
    with JudgeServer(lambda call: answer, model="m") as server:
        settings.ARENA_JUDGES = []
        settings.ARENA_JUDGE_URL, settings.ARENA_JUDGE_MODEL, settings.ARENA_JUDGE_NAME = server.url, "m", "default"
        settings.ARENA_JUDGE_TIMEOUT, settings.ARENA_JUDGE_RETRIES = 1, 1
        run = run_judge(study, "default", django_capture_on_commit_callbacks)
    assert run.job.status == "failed"
    assert expected in run.job.message and f"ARENA_JUDGE_URL={server.url}" in run.job.message
    if answer == 401:
        assert "check the API key" in run.job.message
    assert JudgeVote.objects.count() == 0 and not JudgeReport.objects.filter(study=study).exclude(data__judges=[]).exists()


def test_an_unreachable_endpoint_is_a_job_error(settings, study, django_capture_on_commit_callbacks):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    configure(settings, {"name": "gone", "url": f"http://127.0.0.1:{port}/v1", "model": "m", "retries": 1})
    run = run_judge(study, "gone", django_capture_on_commit_callbacks)
    assert run.job.status == "failed"
    assert "could not be reached" in run.job.message and "ARENA_JUDGES[0]" in run.job.message
    assert JudgeVote.objects.count() == 0
    assert ScoreJob.objects.get(pk=run.job_id).kind == "judge"
    assert JudgeRun.objects.count() == 1


def test_the_judges_section_catches_up_with_new_human_votes_at_the_next_recompute(settings, study, django_capture_on_commit_callbacks):
    with JudgeServer(fair, model="fair-vl") as server:
        configure(settings, {"name": "fair", "url": server.url, "model": "fair-vl"})
        run_judge(study, "fair", django_capture_on_commit_callbacks)
    before = report(study, "fair")
    assert before["pairwise_accuracy"]["value"] is None and before["pairwise_accuracy"]["too_few"]
    assert all(r["human_bt"] is None for r in before["ranking"])
    # Tasks come in blocks of 10 of one kind, in an order of each annotator's own: 24 tasks reach
    # every kind's block, so there are pairwise votes whatever order the annotators drew.
    human_votes(study, n_annotators=2, per=24)
    assert Vote.objects.filter(study=study, kind="pairwise").exists()
    study_recompute(study_id=study.pk)
    after = report(study, "fair")
    acc, n = expected_pairwise_accuracy(study, lambda v: int(np.sign(GENERATOR_NAMES.index(v.generator_left.name)
                                                                     - GENERATOR_NAMES.index(v.generator_right.name))))
    assert n > 0 and after["pairwise_accuracy"]["value"] == pytest.approx(acc) and after["pairwise_accuracy"]["n"] == n
    assert any(r["human_bt"] is not None for r in after["ranking"])


def test_an_open_board_refreshes_when_a_judge_run_finishes(settings, study, researcher, django_capture_on_commit_callbacks):
    c = client_for(researcher)
    page = c.get(f"/leaderboard/{study.slug}/").content.decode()
    since = re.search(r'hx-get="[^"]*since=([^"&]+)', page).group(1)
    assert c.get(f"/leaderboard/{study.slug}/?since={since}", HTTP_HX_REQUEST="true").status_code == 204
    with JudgeServer(fair, model="fair-vl") as server:
        configure(settings, {"name": "fair", "url": server.url, "model": "fair-vl"})
        run_judge(study, "fair", django_capture_on_commit_callbacks, sample=3)
    fragment = c.get(f"/leaderboard/{study.slug}/?since={since}", HTTP_HX_REQUEST="true")
    assert fragment.status_code == 200 and 'id="judges"' in fragment.content.decode()


def test_the_question_audit_reads_a_judges_answers_to_the_questions_people_answered(
    settings, make_study, django_user_model, researcher, django_capture_on_commit_callbacks,
):
    from tests.ratings.test_question_board import annotators, cast_everything, expected_counts

    questions = {0: ["Is there a shape?", "Is the shape red?"], 1: ["Is it square?"]}
    study = make_study(kinds=("questions",), prompts=2, questions=questions, overlap_target=3, quota_per_annotator=100)
    cast, _ = cast_everything(study, annotators(django_user_model, 3), random.Random(3))
    with JudgeServer(fair, model="fair-vl") as server:
        configure(settings, {"name": "fair", "url": server.url, "model": "fair-vl"})
        run = run_judge(study, "fair", django_capture_on_commit_callbacks)
    assert run.job.status == "done" and run.verdicts == len(cast)  # only the questions: no rating or pair is asked
    assert {c.kind for c in server.calls} == {"question"}
    study_recompute(study_id=study.pk)
    generator_of = {o.pk: o.generator.name for o in Output.objects.select_related("generator")}
    answers = {key: GENERATOR_NAMES.index(generator_of[key[0]]) >= 1 for key in cast}
    qc = api_client_for(researcher).get(f"/api/studies/{study.slug}/leaderboard/").json()["question_checks"]
    got = next(s for s in qc["sources"] if s["name"] == "fair")["overall"]
    want = expected_counts(cast, answers)
    assert want["n"] and {k: got[k] for k in ("n", "correct", "hallucinated", "missed")} == {
        k: want[k] for k in ("n", "correct", "hallucinated", "missed")}
