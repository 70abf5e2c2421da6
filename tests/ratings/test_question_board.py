"""The board's question checks against counts made here from the answers cast."""

import random

import pytest
from django.contrib.auth.models import Group
from statsmodels.stats.proportion import proportion_confint

from arena.models import Assignment, Output
from judging.models import OutputScore
from arena.services import annotator_exclusion_set
from ratings.services import study_recompute
from tests.conftest import api_client_for, client_for

pytestmark = pytest.mark.django_db

QUESTIONS = {0: ["Is there a cube?", "Is the cube red?"], 1: ["Is there a cat?", "Is the cat asleep?", "Is it night?"],
             2: ["Is there a tree?"], 3: ["Is there a dog?", "Is the dog brown?"]}
CATEGORIES = {0: "objects", 1: "animals", 2: "plants", 3: "animals"}


def annotators(django_user_model, n):
    group = Group.objects.get(name="annotator")
    users = []
    for k in range(n):
        u = django_user_model.objects.create_user(f"voter{k}", password="pw-voter-123")
        u.groups.add(group)
        users.append(u)
    return users


def cast_everything(study, users, rng, skip_share=0.0):
    """Each annotator answers every question check served to them at random; returns
    {(output id, question index): [answers]} and who answered what."""
    cast: dict[tuple[int, int], list[bool]] = {}
    by_user: dict[int, list[tuple[tuple[int, int], bool]]] = {}
    for u in users:
        api = api_client_for(u)
        body = api.get(f"/api/studies/{study.slug}/next-task/").json()
        while body["task"] is not None:
            t = body["task"]
            if rng.random() < skip_share:
                res = api.post(f"/api/studies/{study.slug}/votes/", {"assignment": t["assignment"], "answer": "skip"}, format="json")
            else:
                oid = Assignment.objects.get(pk=t["assignment"]).output_left_id
                answers = [rng.random() < 0.5 for _ in t["questions"]]
                res = api.post(f"/api/studies/{study.slug}/votes/", {
                    "assignment": t["assignment"], "questions": {str(i): "yes" if a else "no" for i, a in enumerate(answers)}},
                    format="json")
                assert res.status_code == 201, res.json()
                for i, a in enumerate(answers):
                    cast.setdefault((oid, i), []).append(a)
                    by_user.setdefault(u.pk, []).append(((oid, i), a))
            body = res.json()["next"]
    return cast, by_user


def expected_counts(cast, model, keep=lambda key: True):
    """Accuracy, hallucinations and misses counted from scratch."""
    n = right = halluc = missed = people_no = people_yes = tied = 0
    for key, answers in cast.items():
        if not keep(key):
            continue
        yes, no = sum(answers), len(answers) - sum(answers)
        if yes == no:
            tied += 1
            continue
        if key not in model:
            continue
        people = yes > no
        n += 1
        right += people == model[key]
        people_yes += people
        people_no += not people
        halluc += model[key] and not people
        missed += people and not model[key]
    return {"n": n, "correct": right, "hallucinated": halluc, "missed": missed, "people_yes": people_yes,
            "people_no": people_no, "tied": tied}


def test_the_board_counts_hallucinations_and_misses_as_people_answered(make_study, django_user_model, researcher, monkeypatch):
    study = make_study(kinds=("questions",), prompts=5, questions=QUESTIONS, categories=CATEGORIES, overlap_target=4,
                       quota_per_annotator=100, reveal_after_vote=False)
    rng = random.Random(7)
    users = annotators(django_user_model, 4)
    cast, by_user = cast_everything(study, users, rng, skip_share=0.05)
    assert any(2 * sum(v) == len(v) for v in cast.values())  # four answers each: ties happen
    # VQAScore's stored answers, P(yes) drawn here; one output was never scored.
    outputs = {o.pk: o for o in Output.objects.exclude(prompt__questions=[]).select_related("prompt", "generator")}
    unscored = min(oid for (oid, _), v in cast.items() if 2 * sum(v) != len(v))  # one with a decided question
    probs = {oid: [rng.choice([0.05, 0.3, 0.49, 0.51, 0.8, 0.97]) for _ in o.prompt.questions]
             for oid, o in outputs.items() if oid != unscored}
    # Whichever tasks the sampler served, the model disagrees with people both ways somewhere and
    # agrees somewhere: a question people said no to it says yes to, one people said yes to it
    # says no to, and one where it says what people said.
    said = sorted((2 * sum(v) > len(v), key) for key, v in cast.items() if 2 * sum(v) != len(v) and key[0] in probs)
    no, yes = [key for y, key in said if not y], [key for y, key in said if y]
    for (oid, i), p in ((no[0], 0.97), (yes[0], 0.05), (yes[1], 0.97) if len(yes) > 1 else (no[1], 0.05)):
        probs[oid][i] = p
    model = {}
    for oid, ps in probs.items():
        o = outputs[oid]
        OutputScore.objects.create(output=o, scorer="vqa", model_id="vqa:test", value=0.5, details={
            "questions": [{"question": q, "p_yes": p} for q, p in zip(o.prompt.questions, ps)], "yes_share": 0.5})
        model.update({(oid, i): p > 0.5 for i, p in enumerate(ps)})
    # A judge's answers, as its selector would give them.
    judge = {key: rng.random() < 0.5 for key in cast if key[0] % 2 == 0}
    import judging.selectors

    monkeypatch.setattr(judging.selectors, "judge_question_answers",
                        lambda *, study: [("tiny-judge", oid, i, yes) for (oid, i), yes in judge.items()], raising=False)
    study_recompute(study_id=study.pk)

    body = api_client_for(researcher).get(f"/api/studies/{study.slug}/leaderboard/").json()
    qc = body["question_checks"]
    want = expected_counts(cast, model)
    assert want["hallucinated"] and want["missed"] and want["tied"] and want["correct"]  # every case occurs
    assert want["n"] < len(cast) - want["tied"]  # the unscored output is left out of VQAScore's n
    assert qc["answers"] == sum(len(v) for v in cast.values())
    assert qc["tied"] == want["tied"] and qc["items"] == len(cast) - want["tied"]
    sources = {s["name"]: s for s in qc["sources"]}
    assert list(sources) == ["VQAScore", "tiny-judge"]
    for name, answers in (("VQAScore", model), ("tiny-judge", judge)):
        got, want = sources[name]["overall"], expected_counts(cast, answers)
        for k in ("n", "correct", "hallucinated", "missed", "people_yes", "people_no"):
            assert got[k] == want[k], (name, k)
        low, high = proportion_confint(want["correct"], want["n"], alpha=0.05, method="wilson")
        assert got["low"] == pytest.approx(low, abs=1e-5) and got["high"] == pytest.approx(high, abs=1e-5)
        for rate, k, of in (("hallucination_rate", "hallucinated", "people_no"), ("missed_rate", "missed", "people_yes")):
            if want[of]:  # a source may answer none of the items people said no (or yes) to: no rate then
                assert got[rate]["rate"] == pytest.approx(want[k] / want[of], abs=1e-5), (name, rate)
            else:
                assert got[rate]["rate"] is None and got[rate]["low"] is None, (name, rate)
        for g in sources[name]["generators"]:
            w = expected_counts(cast, answers, keep=lambda key: outputs[key[0]].generator.name == g["name"])
            assert (g["n"], g["hallucinated"], g["missed"]) == (w["n"], w["hallucinated"], w["missed"])
        for c in sources[name]["categories"]:
            w = expected_counts(cast, answers, keep=lambda key: outputs[key[0]].prompt.category == c["name"])
            assert (c["n"], c["hallucinated"], c["missed"]) == (w["n"], w["hallucinated"], w["missed"])
        assert {c["name"] for c in sources[name]["categories"]} <= set(CATEGORIES.values())

    # The page shows the same counts.
    page = client_for(researcher).get(f"/leaderboard/{study.slug}/").content.decode()
    w = expected_counts(cast, model)
    row = page[page.index('data-source="VQAScore" data-cut="all"'):]
    row = row[: row.index("</tr>")]
    assert f'<span class="halluc">{w["hallucinated"]}</span>' in row and f'<span class="missed">{w["missed"]}</span>' in row
    assert f'<td class="num items">{w["n"]}</td>' in row

    # An excluded annotator's answers leave the audit.
    gone = users[0]
    annotator_exclusion_set(annotator=gone.annotator, excluded=True)
    study_recompute(study_id=study.pk)
    kept: dict[tuple[int, int], list[bool]] = {}
    for u in users[1:]:
        for key, a in by_user.get(u.pk, []):
            kept.setdefault(key, []).append(a)
    qc = api_client_for(researcher).get(f"/api/studies/{study.slug}/leaderboard/").json()["question_checks"]
    got, want = qc["sources"][0]["overall"], expected_counts(kept, model)
    assert (got["n"], got["hallucinated"], got["missed"]) == (want["n"], want["hallucinated"], want["missed"])


def test_a_study_with_question_checks_says_so_before_any_answer(make_study, researcher, annotator_user):
    study = make_study(kinds=("questions", "likert"), prompts=3, questions=QUESTIONS, reveal_after_vote=False)
    api = api_client_for(annotator_user)
    body = api.get(f"/api/studies/{study.slug}/next-task/").json()
    while body["task"]["kind"] != "likert":
        body = api.post(f"/api/studies/{study.slug}/votes/", {"assignment": body["task"]["assignment"], "answer": "skip"},
                        format="json").json()["next"]
    api.post(f"/api/studies/{study.slug}/votes/", {"assignment": body["task"]["assignment"], "answer": "5"}, format="json")
    study_recompute(study_id=study.pk)
    page = client_for(researcher).get(f"/leaderboard/{study.slug}/").content.decode()
    assert 'id="question-checks"' in page and "No question has a majority answer from people yet." in page
