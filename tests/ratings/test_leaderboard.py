"""Votes reach the stored leaderboard: online Elo exactly once and in order, the debounced full
recompute, exclusions, pages and the JSON API."""

import math
import time

import numpy as np
import pytest
from django.db import transaction
from scipy import stats as sps

from arena import hooks
from arena.models import Annotator, Generator, Vote
from arena.voting import vote_record
from tests.conftest import task_next
from ratings.models import AnnotatorQuality, EloState, LeaderboardResult, RecomputeState
from arena.services import annotator_exclusion_set
from ratings.services import elo_apply, recompute_claim, study_recompute
from tests.conftest import GENERATOR_NAMES, api_client_for, client_for

pytestmark = pytest.mark.django_db


def cast(study, annotator, prefer: str | None = None, likert: int = 4, binary: str = "good"):
    """Serve one task and answer it; pairwise votes go to `prefer` when it is shown, else left."""
    a, _ = task_next(study=study, annotator=annotator, ahead=0)
    if a.kind == "pairwise":
        names = (a.output_left.generator.name, a.output_right.generator.name)
        answer = "right" if prefer and names[1] == prefer else "left"
    elif a.kind == "likert":
        answer = str(likert)
    else:
        answer = binary
    return vote_record(study=a.study, assignment_id=a.pk, annotator=annotator, answer=answer).vote


def board(study):
    return LeaderboardResult.objects.get(study=study, criterion=study.criteria.first(), category="").data


def test_one_vote_moves_elo_by_two_points_each_way(make_study, django_capture_on_commit_callbacks):
    study = make_study(kinds=("pairwise",))
    annotator = Annotator.objects.create()
    with django_capture_on_commit_callbacks(execute=True):
        vote = cast(study, annotator)
    state = EloState.objects.get(study=study)
    # K=4, equal ratings: expected score 0.5, so the winner gains 4 * 0.5 = 2
    assert state.ratings[str(vote.generator_left_id)] == [1002.0, 1]
    assert state.ratings[str(vote.generator_right_id)] == [998.0, 1]
    assert Vote.objects.get().elo_applied


def test_elo_applies_each_vote_exactly_once_in_vote_order(make_study, django_capture_on_commit_callbacks):
    study = make_study(kinds=("pairwise",), prompts=10, quota_per_annotator=500)
    annotators = [Annotator.objects.create() for _ in range(4)]
    for k in range(40):
        cast(study, annotators[k % 4], prefer="narwhal-gan")  # no commit hooks: nothing applied yet
    criterion = study.criteria.first()
    assert elo_apply(study_id=study.pk, criterion_id=criterion.pk) == 40
    assert elo_apply(study_id=study.pk, criterion_id=criterion.pk) == 0  # a duplicate delivery applies nothing
    state = EloState.objects.get(study=study)
    # independent replay of the same votes in id order
    r = {}
    for v in Vote.objects.order_by("id"):
        a, b = r.get(v.generator_left_id, 1000.0), r.get(v.generator_right_id, 1000.0)
        s = {"left": 1.0, "right": 0.0}.get(v.choice, 0.5)
        e = 1 / (1 + 10 ** ((b - a) / 400))
        r[v.generator_left_id], r[v.generator_right_id] = a + 4 * (s - e), b - 4 * (s - e)
    for gid, rating in r.items():
        assert state.ratings[str(gid)][0] == pytest.approx(rating, abs=1e-9)
    assert state.votes_applied == 40


def test_the_full_recompute_ranks_the_preferred_generator_first_with_intervals(make_study):
    study = make_study(prompts=10, quota_per_annotator=500)
    annotators = [Annotator.objects.create() for _ in range(6)]
    for k in range(180):
        cast(study, annotators[k % 6], prefer="narwhal-gan", likert=1 + k % 5)
    assert study_recompute(study_id=study.pk)
    data = board(study)
    top = data["generators"][0]
    assert top["name"] == "narwhal-gan" and top["rank"] == 1
    for g in data["generators"]:
        assert g["bt_low"] <= g["bt"] <= g["bt_high"]
    assert np.mean([g["bt"] for g in data["generators"]]) == pytest.approx(1000.0, abs=1e-6)
    likert = Vote.objects.filter(kind="likert")
    for g in data["generators"]:
        scores = [v.score for v in likert if v.generator_left.name == g["name"]]
        if len(scores) >= 2:
            sd = np.std(scores, ddof=1)
            half = sps.t.ppf(0.975, len(scores) - 1) * sd / math.sqrt(len(scores))
            lk = g["likert"]
            assert lk["mean"] == pytest.approx(np.mean(scores), abs=1e-6) and lk["n"] == len(scores)
            # A bootstrap interval that stays on the 1–5 scale, about as wide as the t interval.
            assert 1 <= lk["low"] <= lk["mean"] <= lk["high"] <= 5
            assert (lk["high"] - lk["low"]) / 2 == pytest.approx(half, rel=0.4)
    pw = Vote.objects.filter(kind="pairwise")
    assert data["totals"]["pairwise"] == pw.count()
    assert data["position_bias"]["overall"]["n"] == pw.filter(choice__in=["left", "right"]).count()


def test_binary_pass_rate_carries_a_wilson_interval(make_study):
    study = make_study(kinds=("binary",), prompts=4, quota_per_annotator=100)
    annotators = [Annotator.objects.create() for _ in range(3)]
    for k in range(30):
        cast(study, annotators[k % 3], binary="good" if k % 3 else "bad")
    study_recompute(study_id=study.pk)
    for g in board(study)["generators"]:
        votes = [v.score for v in Vote.objects.filter(generator_left__name=g["name"])]
        if not votes:
            continue
        n, p = len(votes), sum(votes) / len(votes)
        z = sps.norm.ppf(0.975)
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        assert g["binary"]["rate"] == pytest.approx(p)
        assert (g["binary"]["low"], g["binary"]["high"]) == pytest.approx((centre - half, centre + half), abs=1e-6)


def test_only_one_recompute_runs_at_a_time(make_study):
    study = make_study()
    assert recompute_claim(study_id=study.pk)
    assert not recompute_claim(study_id=study.pk)
    assert study_recompute(study_id=study.pk) is False
    RecomputeState.objects.filter(study=study).update(running=False)
    assert study_recompute(study_id=study.pk) is True


def test_excluded_annotators_are_left_out_of_every_rating(make_study, django_capture_on_commit_callbacks):
    study = make_study(kinds=("pairwise",), prompts=10, quota_per_annotator=500)
    honest = [Annotator.objects.create() for _ in range(3)]
    spammer = Annotator.objects.create()
    with django_capture_on_commit_callbacks(execute=True):
        for k in range(30):
            cast(study, honest[k % 3], prefer="narwhal-gan")
        for _ in range(60):
            cast(study, spammer, prefer="axolotl-flow")
    study_recompute(study_id=study.pk)
    assert board(study)["totals"]["pairwise"] == 90
    with django_capture_on_commit_callbacks(execute=True):
        annotator_exclusion_set(annotator=spammer, excluded=True, reason="always one model")
    RecomputeState.objects.filter(study=study).update(running=False)
    study_recompute(study_id=study.pk)
    data = board(study)
    assert data["totals"]["pairwise"] == 30
    assert data["generators"][0]["name"] == "narwhal-gan"
    state = EloState.objects.get(study=study)
    assert sum(v[1] for v in state.ratings.values()) == 2 * 30
    assert Vote.objects.filter(annotator=spammer).count() == 60  # kept, only left out


def _stored(study) -> dict:
    boards = {r.category: (r.votes_total, r.data) for r in LeaderboardResult.objects.filter(study=study)}
    return {"boards": boards, "review": AnnotatorQuality.objects.get(study=study).data}


@pytest.mark.django_db(transaction=True)
def test_the_workers_recompute_stores_the_same_figures_as_one_inside_a_transaction(make_study, monkeypatch):
    # The worker recomputes in autocommit, where on PostgreSQL the annotators' figures are read on
    # a second connection while the first aggregates the items; inside a transaction one connection does it all.
    monkeypatch.setitem(hooks._registry, "vote_committed", lambda **kwargs: None)  # one recompute, run below
    study = make_study(prompts=6, quota_per_annotator=500, categories={0: "animals", 1: "animals", 2: "cities"})
    annotators = [Annotator.objects.create() for _ in range(4)]
    for k in range(120):
        cast(study, annotators[k % 4], prefer="narwhal-gan", likert=1 + k % 5, binary="good" if k % 3 else "bad")
    with transaction.atomic():
        assert study_recompute(study_id=study.pk)
    inside = _stored(study)
    assert study_recompute(study_id=study.pk)
    assert _stored(study) == inside
    assert set(inside["boards"]) == {"", "animals", "cities"}
    review = inside["review"]
    assert sorted(r["votes"] for r in review) == [30, 30, 30, 30]
    assert all(r["skip"]["n"] == 30 and r["agreement"]["n"] > 0 for r in review)
    assert inside["boards"][""][1]["generators"][0]["name"] == "narwhal-gan"


@pytest.mark.django_db(transaction=True)
def test_a_failing_board_is_recorded_after_the_review_stored_beside_it_has_finished(make_study, monkeypatch):
    # The worker stores the annotator review on a second connection while it fits the boards.
    from ratings import services

    monkeypatch.setitem(hooks._registry, "vote_committed", lambda **kwargs: None)
    study = make_study(prompts=4, quota_per_annotator=500)
    annotators = [Annotator.objects.create() for _ in range(3)]
    for k in range(30):
        cast(study, annotators[k % 3])
    stored = services.annotator_quality_store
    order = []

    def slow_review(**kwargs):
        time.sleep(0.5)
        result = stored(**kwargs)
        order.append("review stored")
        return result

    def failing_board(*args, **kwargs):
        raise RuntimeError("the fit diverged")

    monkeypatch.setattr(services, "annotator_quality_store", slow_review)
    monkeypatch.setattr(services, "_recompute_criterion", failing_board)
    with pytest.raises(RuntimeError, match="the fit diverged"):
        study_recompute(study_id=study.pk)
    state = RecomputeState.objects.get(study=study)
    assert order == ["review stored"]  # finished before the run was released
    assert not state.running and state.last_error == "RuntimeError: the fit diverged"
    assert sorted(r["votes"] for r in AnnotatorQuality.objects.get(study=study).data) == [10, 10, 10]
    assert not LeaderboardResult.objects.filter(study=study).exists()


@pytest.mark.parametrize(
    "persona,expected", [("admin", 200), ("researcher", 200), ("annotator", 403), ("outsider", 403), ("anonymous", 302)]
)
def test_who_may_read_the_leaderboard_page(personas, persona, expected, make_study):
    study = make_study()
    assert client_for(personas[persona]).get(f"/leaderboard/{study.slug}/").status_code == expected


@pytest.mark.parametrize(
    "persona,expected", [("admin", 200), ("researcher", 200), ("annotator", 403), ("outsider", 403), ("anonymous", 401)]
)
def test_who_may_read_the_leaderboard_api(personas, persona, expected, make_study):
    study = make_study()
    assert api_client_for(personas[persona]).get(f"/api/studies/{study.slug}/leaderboard/").status_code == expected


def test_a_public_leaderboard_is_readable_by_anyone(make_study):
    study = make_study(public_leaderboard=True)
    assert client_for(None).get(f"/leaderboard/{study.slug}/").status_code == 200
    assert api_client_for(None).get(f"/api/studies/{study.slug}/leaderboard/").status_code == 200


def test_the_page_shows_ratings_intervals_charts_and_live_elo(make_study, researcher, django_capture_on_commit_callbacks):
    study = make_study(prompts=8, quota_per_annotator=500)
    annotators = [Annotator.objects.create() for _ in range(4)]
    with django_capture_on_commit_callbacks(execute=True):
        for k in range(120):
            cast(study, annotators[k % 4], prefer="quokka-diffusion")
    RecomputeState.objects.filter(study=study).update(running=False)
    study_recompute(study_id=study.pk)
    c = client_for(researcher)
    page = c.get(f"/leaderboard/{study.slug}/").content.decode()
    assert '<tr data-generator="quokka-diffusion">' in page
    assert "<svg" in page and "Ratings with 95" in page and "Win rates" in page
    assert "Krippendorff" in page and "Position bias" in page
    assert 'id="sampler">uniform<' in page
    data = LeaderboardResult.objects.get(study=study, category="").data
    needed, status = data["votes_needed"], data["votes_needed_status"]
    assert status in {"estimate", "beyond", "settled", "too_few"}
    shown = {"estimate": f'id="votes-needed">{needed}<', "beyond": 'id="votes-needed">far more votes<',
             "settled": 'id="votes-needed">ranking settled<'}
    if status == "too_few":
        assert 'id="votes-needed"' not in page and data["provisional_count"] > 0
    else:
        assert shown[status] in page
    elo = EloState.objects.get(study=study).ratings
    q = Generator.objects.get(name="quokka-diffusion").pk
    assert f"{elo[str(q)][0]:.1f}" in page
    frag = c.get(f"/leaderboard/{study.slug}/", HTTP_HX_REQUEST="true").content.decode()
    assert frag.lstrip().startswith('<div id="board"') and 'hx-trigger="every 2s"' in frag and "since=" in frag
    api = api_client_for(researcher).get(f"/api/studies/{study.slug}/leaderboard/").json()
    row = next(g for g in api["generators"] if g["name"] == "quokka-diffusion")
    assert row["rank"] == 1 and row["elo"] == pytest.approx(elo[str(q)][0], abs=0.01)
    assert set(row) >= {"bt", "bt_low", "bt_high", "elo", "pairwise_votes", "likert", "binary"}


def test_category_boards_count_only_their_prompts(make_study):
    from arena.models import Prompt

    study = make_study(kinds=("pairwise",), prompts=6, quota_per_annotator=500)
    for p in Prompt.objects.filter(text__endswith=("0")):
        p.category = "animals"
        p.save()
    annotators = [Annotator.objects.create() for _ in range(3)]
    for k in range(60):
        cast(study, annotators[k % 3])
    study_recompute(study_id=study.pk)
    cat = LeaderboardResult.objects.get(study=study, category="animals").data
    assert cat["totals"]["pairwise"] == Vote.objects.filter(prompt_category="animals").count()
    assert board(study)["totals"]["pairwise"] == 60


def test_vote_commits_queue_one_elo_update_and_one_recompute(make_study, django_capture_on_commit_callbacks, monkeypatch):
    from ratings import tasks

    calls = {"elo": 0, "recompute": 0}
    monkeypatch.setattr(tasks.elo_apply_task, "apply_async", lambda *a, **k: calls.__setitem__("elo", calls["elo"] + 1))
    monkeypatch.setattr(tasks.recompute_task, "apply_async", lambda *a, **k: calls.__setitem__("recompute", calls["recompute"] + 1))
    study = make_study(kinds=("pairwise",))
    annotator = Annotator.objects.create()
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(5):
            cast(study, annotator)
    assert calls == {"elo": 1, "recompute": 1}  # debounced: later votes find the work already queued


def test_the_sampler_state_places_a_generator_added_after_the_last_fit(make_study):
    from arena.models import Generator
    from ratings.selectors import sampler_inputs_get

    study = make_study(kinds=("pairwise",), prompts=6, quota_per_annotator=500)
    annotators = [Annotator.objects.create() for _ in range(3)]
    for k in range(60):
        cast(study, annotators[k % 3], prefer="narwhal-gan")
    study_recompute(study_id=study.pk)
    newcomer = Generator.objects.create(name="late-arrival")
    ids = list(Generator.objects.filter(name__in=GENERATOR_NAMES).values_list("id", flat=True)) + [newcomer.pk]
    state = sampler_inputs_get(study=study, criterion=study.criteria.first(), generators=ids)
    assert np.isnan(state.ratings[-1]) and state.counts[-1].sum() == 0
    assert np.isfinite(state.ratings[:-1]).all()
    assert state.counts[:-1, :-1].sum() == 2 * Vote.objects.filter(kind="pairwise").count()
