"""Numbers a researcher can trust from the first pilot: provisional boards, bounded intervals,
agreement early, the votes-needed rule, annotator review and a board that only reads."""

import re
from collections import Counter

import numpy as np
import pytest

from arena.models import Annotator, Assignment, Vote
from arena.voting import vote_record
from tests.conftest import task_next
from ratings import board as board_rules
from ratings.models import AnnotatorQuality, LeaderboardResult
from ratings.selectors import board_version_get
from ratings.services import PairCounts, _board, _votes_needed, study_recompute
from tests.conftest import GENERATOR_NAMES, client_for

pytestmark = pytest.mark.django_db


def answer(a, rng) -> str:
    if a.kind == "pairwise":
        return rng.choice(["left", "right", "tie"])
    if a.kind == "likert":
        return str(rng.integers(1, 6))
    return rng.choice(["good", "bad"])


def board(study, category=""):
    return LeaderboardResult.objects.get(study=study, criterion=study.criteria.first(), category=category).data


def test_a_two_vote_pilot_says_it_knows_little(make_study, researcher):
    study = make_study(kinds=("pairwise", "likert"), quota_per_annotator=50)
    annotator = Annotator.objects.create()
    kinds = Counter()
    while kinds["pairwise"] < 2 or kinds["likert"] < 1:
        a, _ = task_next(study=study, annotator=annotator, ahead=0)
        if kinds[a.kind] >= (2 if a.kind == "pairwise" else 1):
            vote_record(study=study, assignment_id=a.pk, annotator=annotator, answer="skip")
            continue
        vote_record(study=study, assignment_id=a.pk, annotator=annotator, answer={"pairwise": "left", "likert": "5"}[a.kind])
        kinds[a.kind] += 1
    assert study_recompute(study_id=study.pk)
    data = board(study)
    assert data["totals"]["pairwise"] == 2
    assert all(g["provisional"] and g["rank"] is None for g in data["generators"])
    assert data["all_provisional"] and data["votes_needed"] is None and data["votes_needed_status"] == "too_few"
    rated = [g for g in data["generators"] if g["likert"]]
    assert len(rated) == 1 and rated[0]["likert"]["n"] == 1 and rated[0]["likert"]["low"] is None
    page = client_for(researcher).get(f"/leaderboard/{study.slug}/").content.decode()
    assert "Every generator is provisional" in page
    assert 'id="votes-needed"' not in page
    assert "n = 1" in page and "[, ]" not in page and "[None" not in page
    # A provisional rating's bootstrap interval from two votes is not shown as if it meant something.
    assert "too few votes" in page and "Ratings with 95" not in page
    ranks = re.findall(r'<tr data-generator="[^"]+" class="provisional">\s*<td class="num">([^<]*)</td>', page)
    assert ranks == ["—"] * len(GENERATOR_NAMES)


def test_rating_intervals_stay_inside_the_scale(make_study):
    study = make_study(kinds=("likert",), prompts=3, quota_per_annotator=50)
    people = [Annotator.objects.create() for _ in range(3)]
    for p in people:
        while (a := task_next(study=study, annotator=p, ahead=0)[0]) is not None:
            # one generator gets a 1 and then only 5s: a t interval would run past 5
            vote_record(study=study, assignment_id=a.pk, annotator=p,
                        answer="1" if p is people[0] and a.output_left.generator.name == GENERATOR_NAMES[0] else "5")
    study_recompute(study_id=study.pk)
    for g in board(study)["generators"]:
        lk = g["likert"]
        assert 1 <= lk["low"] <= lk["mean"] <= lk["high"] <= 5 and lk["n"] >= 2


def _synthetic_board(votes: int, seed: int = 0):
    """A board fitted from `votes` pairwise votes among 4 generators 20 Elo apart."""
    rng = np.random.default_rng(seed)
    strength = np.array([0.0, 20.0, 40.0, 60.0])
    a, b, left = [], [], []
    for _ in range(votes):
        i, j = rng.choice(4, 2, replace=False)
        p = 1 / (1 + 10 ** ((strength[j] - strength[i]) / 400))
        a.append(int(i))
        b.append(int(j))
        left.append(int(rng.random() < p))
    left = np.array(left)
    none = np.zeros(votes, dtype=np.int64)
    counts = PairCounts(cluster=none, a=np.array(a), b=np.array(b), left=left, right=1 - left, tie=none, bothbad=none)
    gens = [(k + 1, f"g{k}") for k in range(4)]
    return _board(gens, 4, counts, {}, {}, True, 200, min_votes=10)


@pytest.mark.parametrize("votes,status", [(2, "too_few"), (20, "too_few"), (2000, "estimate")])
def test_votes_still_needed_is_shown_only_when_it_can_be_estimated(votes, status):
    data = _synthetic_board(votes)
    needed = _votes_needed(data)
    assert needed["status"] == status
    if status == "estimate":
        # A real estimate, not an absurd extrapolation: at most ten times the votes so far.
        assert 0 < needed["value"] <= 10 * votes
    else:
        assert needed["value"] is None


def test_the_votes_needed_rule():
    assert board_rules.votes_needed(5_160_231, 2, ranked=1, provisional_count=3)["status"] == "too_few"
    assert board_rules.votes_needed(5_000, 100, ranked=4, provisional_count=0) == {"status": "beyond", "value": 1000}
    assert board_rules.votes_needed(800, 100, ranked=4, provisional_count=0) == {"status": "estimate", "value": 800}
    assert board_rules.votes_needed(0, 100, ranked=4, provisional_count=0) == {"status": "settled", "value": 0}
    assert board_rules.votes_needed(800, 100, ranked=4, provisional_count=1)["status"] == "too_few"


def test_each_item_goes_to_at_most_overlap_target_annotators(make_study):
    study = make_study(kinds=("binary",), prompts=3, overlap_target=1, quota_per_annotator=100)
    people = [Annotator.objects.create() for _ in range(3)]
    for p in people:
        while (a := task_next(study=study, annotator=p, ahead=0)[0]) is not None:
            vote_record(study=study, assignment_id=a.pk, annotator=p, answer="good")
    per_item = Counter(Assignment.objects.filter(study=study).values_list("item_key", flat=True))
    assert set(per_item.values()) == {1}
    assert len(per_item) == len(GENERATOR_NAMES) * 3  # every item served once, then nothing is left


def test_a_calibration_set_gives_agreement_with_an_interval_early(make_study, researcher):
    study = make_study(kinds=("pairwise", "likert", "binary"), prompts=10, quota_per_annotator=40,
                       calibration_items=10, calibration_annotators=3, overlap_target=3)
    rng = np.random.default_rng(7)
    people = [Annotator.objects.create() for _ in range(3)]
    for p in people:
        for _ in range(40):
            a, _ = task_next(study=study, annotator=p, ahead=0)
            # People mostly agree: a good picture is good for everyone.
            if a.kind == "binary":
                good = a.output_left.generator.name in GENERATOR_NAMES[:2]
                ans = ("good" if good else "bad") if rng.random() < 0.9 else ("bad" if good else "good")
            elif a.kind == "likert":
                ans = str(min(5, max(1, (4 if a.output_left.generator.name in GENERATOR_NAMES[:2] else 2) + rng.integers(-1, 2))))
            else:
                ans = answer(a, rng)
            vote_record(study=study, assignment_id=a.pk, annotator=p, answer=ans)
    assert Vote.objects.count() == 120
    study_recompute(study_id=study.pk)
    agreement = board(study)["agreement"]
    for kind in ("likert", "binary"):
        a = agreement[kind]
        assert a["units"] >= 8 and a["alpha"] is not None
        assert a["low"] is not None and a["low"] <= a["alpha"] <= a["high"]
    assert agreement["binary"]["alpha"] > 0
    page = client_for(researcher).get(f"/leaderboard/{study.slug}/").content.decode()
    assert re.search(r'data-kind="binary">.*?(\d\.\d\d) – (\d\.\d\d)', page, re.S)


def test_without_a_calibration_set_few_items_overlap(make_study):
    """The contrast: the same pilot spread fewest-first leaves next to nothing to measure agreement on."""
    study = make_study(kinds=("likert", "binary"), prompts=10, quota_per_annotator=15, overlap_target=3)
    people = [Annotator.objects.create() for _ in range(3)]
    for p in people:
        for _ in range(15):
            a, _ = task_next(study=study, annotator=p, ahead=0)
            vote_record(study=study, assignment_id=a.pk, annotator=p, answer="good" if a.kind == "binary" else "3")
    study_recompute(study_id=study.pk)
    assert sum(a["units"] for a in board(study)["agreement"].values()) <= 5


def test_a_study_can_bootstrap_prompts_and_the_board_says_so(make_study, researcher):
    study = make_study(kinds=("pairwise",), prompts=6, quota_per_annotator=200, bootstrap_unit="prompts")
    people = [Annotator.objects.create() for _ in range(3)]
    rng = np.random.default_rng(1)
    for p in people:
        for _ in range(30):
            a, _ = task_next(study=study, annotator=p, ahead=0)
            vote_record(study=study, assignment_id=a.pk, annotator=p, answer=answer(a, rng))
    study_recompute(study_id=study.pk)
    data = board(study)
    assert data["bootstrap_unit"] == "prompts"
    page = client_for(researcher).get(f"/leaderboard/{study.slug}/").content.decode()
    assert "resampling <strong>prompts</strong>" in page


def test_annotators_who_click_without_looking_are_marked_for_review(make_study, personas):
    study = make_study(kinds=("pairwise",), prompts=10, quota_per_annotator=200, overlap_target=3)
    careful = [Annotator.objects.create() for _ in range(2)]
    clicker = Annotator.objects.create()
    for _ in range(30):
        for p in careful:
            a, _ = task_next(study=study, annotator=p, ahead=0)
            names = (a.output_left.generator.name, a.output_right.generator.name)
            # careful people prefer the generator listed first in GENERATOR_NAMES
            ans = "left" if GENERATOR_NAMES.index(names[0]) < GENERATOR_NAMES.index(names[1]) else "right"
            vote_record(study=study, assignment_id=a.pk, annotator=p, answer=ans)
        a, _ = task_next(study=study, annotator=clicker, ahead=0)
        vote_record(study=study, assignment_id=a.pk, annotator=clicker, answer="left")
    Vote.objects.filter(annotator=clicker).update(response_ms=300)
    Vote.objects.exclude(annotator=clicker).update(response_ms=4200)  # people who look take a few seconds
    study_recompute(study_id=study.pk)
    rows = {r["pseudonym"]: r for r in AnnotatorQuality.objects.get(study=study).data}
    flagged = rows[clicker.pseudonym]
    assert any("picks left" in r for r in flagged["reasons"]) and any("median answer" in r for r in flagged["reasons"])
    assert flagged["left"]["share"] == 1.0 and flagged["left"]["n"] == 30
    for p in careful:
        assert not any("picks left" in r or "median" in r for r in rows[p.pseudonym]["reasons"])
    # Staff see the list and exclude in one click; others may not.
    url = f"/staff/studies/{study.slug}/annotators/"
    for persona, expected in (("admin", 200), ("researcher", 403), ("annotator", 403), ("outsider", 403), ("anonymous", 302)):
        assert client_for(personas[persona]).get(url).status_code == expected, persona
    admin = client_for(personas["admin"])
    page = admin.get(url).content.decode()
    assert f'data-annotator="{clicker.pseudonym}" class="review"' in page
    res = admin.post(f"{url}{clicker.pk}/exclude/", {"reason": "clicks left"})
    assert res.status_code == 302
    clicker.refresh_from_db()
    assert clicker.excluded and clicker.excluded_reason == "clicks left"
    assert client_for(personas["researcher"]).post(f"{url}{careful[0].pk}/exclude/").status_code == 403
    careful[0].refresh_from_db()
    assert not careful[0].excluded


def test_the_board_polls_a_version_and_swaps_only_when_it_changed(make_study, researcher):
    study = make_study(kinds=("pairwise",), quota_per_annotator=100)
    p = Annotator.objects.create()
    a, _ = task_next(study=study, annotator=p, ahead=0)
    vote_record(study=study, assignment_id=a.pk, annotator=p, answer="left")
    study_recompute(study_id=study.pk)
    c = client_for(researcher)
    page = c.get(f"/leaderboard/{study.slug}/").content.decode()
    since = re.search(r'hx-get="[^"]*since=([^"&]+)', page).group(1)
    assert since == board_version_get(study=study, criterion=study.criteria.first())
    same = c.get(f"/leaderboard/{study.slug}/?since={since}", HTTP_HX_REQUEST="true")
    assert same.status_code == 204 and same.content == b""
    a, _ = task_next(study=study, annotator=p, ahead=0)
    vote_record(study=study, assignment_id=a.pk, annotator=p, answer="right")
    study_recompute(study_id=study.pk)
    changed = c.get(f"/leaderboard/{study.slug}/?since={since}", HTTP_HX_REQUEST="true")
    assert changed.status_code == 200 and changed.content.decode().lstrip().startswith('<div id="board"')


def test_metric_agreement_is_stored_by_the_recompute_with_one_definition(make_study, researcher):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from arena.models import Output
    from judging.models import GeneratorMetric, OutputScore
    from ratings import stats

    study = make_study(kinds=("pairwise", "likert"), prompts=6, quota_per_annotator=400, overlap_target=10)
    rng = np.random.default_rng(2)
    score = {}
    for o in Output.objects.all():
        score[o.pk] = float(rng.uniform(10, 40))
        OutputScore.objects.create(output=o, scorer="clip", model_id="m", value=score[o.pk])
    for g in study.generators.all():
        vals = [score[o.pk] for o in Output.objects.filter(generator=g)]
        GeneratorMetric.objects.create(study=study, generator=g, metric="clip_score", value=float(np.mean(vals)), n=len(vals))
    people = [Annotator.objects.create() for _ in range(4)]
    for k in range(160):
        p = people[k % 4]
        a, _ = task_next(study=study, annotator=p, ahead=0)
        if a.kind == "pairwise":
            d = score[a.output_left_id] - score[a.output_right_id]
            ans = "tie" if abs(d) < 3 else ("left" if (d > 0) == (k % 4 != 0) else "right")
        else:
            ans = str(int(np.clip(round(score[a.output_left_id] / 8), 1, 5)))
        vote_record(study=study, assignment_id=a.pk, annotator=p, answer=ans)
    study_recompute(study_id=study.pk)
    stored = {m["metric"]: m for m in board(study)["metric_agreement"]}["clip_score"]
    # Per output, pairwise accuracy is the one tie-calibrated definition, over every pairwise vote.
    votes = Vote.objects.filter(kind="pairwise")
    human = np.array([{"left": 1, "right": -1, "tie": 0}[v.choice] for v in votes])
    diff = np.array([score[v.output_left_id] - score[v.output_right_id] for v in votes])
    acc = stored["per_output"]["pairwise_accuracy"]
    assert acc["n"] == len(votes) and acc["value"] == pytest.approx(stats.pairwise_accuracy(human, diff, ties="calibrated"))
    assert acc["low"] <= acc["value"] <= acc["high"]
    rating = stored["per_output"]["rating"]
    assert rating["n"] >= 3 and rating["pearson"]["low"] <= rating["pearson"]["value"] <= rating["pearson"]["high"]
    gen = stored["per_generator"]
    assert gen["n"] == len(GENERATOR_NAMES) and gen["pairwise_accuracy"]["n"] == len(votes)
    for name in ("pearson", "spearman", "kendall"):
        assert gen[name]["low"] is not None and gen[name]["low"] <= gen[name]["high"]
    # The page and the API only read: no scores are read and nothing is recomputed per request.
    c = client_for(researcher)
    c.get(f"/leaderboard/{study.slug}/")  # a first view may queue owed work (eager in tests): settle it
    with CaptureQueriesContext(connection) as q:
        page = c.get(f"/leaderboard/{study.slug}/").content.decode()
        c.get(f"/api/studies/{study.slug}/leaderboard/")
    assert "Pearson r" in page and "tie-calibrated" in page
    # (the view's catch-up check for owed Elo reads an index of unapplied votes; nothing aggregates votes)
    offending = [x["sql"][:300] for x in q.captured_queries
                 if "judging_outputscore" in x["sql"] or ("arena_vote" in x["sql"] and "GROUP BY" in x["sql"])]
    assert not offending, offending
