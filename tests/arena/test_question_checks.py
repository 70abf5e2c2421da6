"""Question checks: yes/no questions of the prompt answered about one image (TIFA/DSG's human protocol)."""

import csv
import io
import json

import pytest

from arena.models import Assignment, Output, QuestionAnswer, Vote
from arena.studies import study_capacity_of
from tests.conftest import GENERATOR_NAMES, api_client_for, client_for

pytestmark = pytest.mark.django_db

QUESTIONS = {0: ["Is there a cube?", "Is the cube red?"], 1: ["Is there a cat?", "Is the cat asleep?", "Is it night?"]}


def question_study(make_study, **options):
    options.setdefault("kinds", ("questions",))
    options.setdefault("reveal_after_vote", False)
    return make_study(prompts=4, questions=QUESTIONS, categories={0: "objects", 1: "animals"}, **options)


def next_task(client, study):
    return client.get(f"/api/studies/{study.slug}/next-task/").json()


def vote(client, study, assignment, questions=None, answer=None):
    body = {"assignment": assignment}
    if questions is not None:
        body["questions"] = questions
    if answer is not None:
        body["answer"] = answer
    return client.post(f"/api/studies/{study.slug}/votes/", body, format="json")


def test_only_outputs_whose_prompt_has_questions_are_served_and_each_once(make_study, annotator_user):
    study = question_study(make_study, quota_per_annotator=50)
    api = api_client_for(annotator_user)
    seen = []
    body = next_task(api, study)
    while body["task"] is not None:
        task = body["task"]
        assert task["kind"] == "questions" and task["answers"] == ["yes", "no", "skip"]
        a = Assignment.objects.get(pk=task["assignment"])
        prompt = a.output_left.prompt
        assert task["questions"] == prompt.questions and prompt.questions
        assert len(task["images"]) == 1 and task["images"][0]["side"] == "single"
        seen.append(a.output_left_id)
        res = vote(api, study, task["assignment"], {str(i): "yes" for i in range(len(task["questions"]))})
        assert res.status_code == 201, res.json()
        body = res.json()["next"]
    with_questions = set(Output.objects.filter(prompt__text__endswith="number 0").values_list("id", flat=True)) | set(
        Output.objects.filter(prompt__text__endswith="number 1").values_list("id", flat=True)
    )
    assert sorted(seen) == sorted(with_questions) and len(seen) == 2 * len(GENERATOR_NAMES)
    assert body["state"] == "no_tasks"
    assert QuestionAnswer.objects.count() == len(GENERATOR_NAMES) * (2 + 3)


def test_answers_are_stored_per_question_and_a_retry_is_stored_once(make_study, annotator_user):
    study = question_study(make_study)
    api = api_client_for(annotator_user)
    task = next_task(api, study)["task"]
    n = len(task["questions"])
    answers = {str(i): ("yes" if i % 2 == 0 else "no") for i in range(n)}
    first = vote(api, study, task["assignment"], answers)
    again = vote(api, study, task["assignment"], dict(reversed(list(answers.items()))))
    assert (first.status_code, again.status_code) == (201, 200)
    v = Vote.objects.get()
    assert v.kind == "questions" and v.score is None and v.choice == ""
    stored = list(QuestionAnswer.objects.filter(vote=v).order_by("question_index").values_list("question_index", "question", "answer"))
    assert stored == [(i, q, i % 2 == 0) for i, q in enumerate(task["questions"])]
    changed = vote(api, study, task["assignment"], {**answers, "0": "no"})
    assert changed.status_code == 409
    assert QuestionAnswer.objects.count() == n


@pytest.mark.parametrize(
    "answers,message",
    [
        ({"0": "yes"}, "question 1 ('{q1}') has no answer"),
        ({"0": "yes", "1": "maybe"}, "question 1 ('{q1}'): answer 'maybe' is not yes or no"),
        ({"0": "yes", "1": "no", "7": "yes"}, "there is no question 7"),
        ({"0": "yes", "first": "no"}, "'first' is not a question index"),
        (None, "send an answer (yes or no) for each"),
        ({}, "question 0 ('{q0}') has no answer"),
    ],
)
def test_a_bad_answer_is_a_400_naming_the_question_and_nothing_is_stored(make_study, annotator_user, answers, message):
    study = question_study(make_study, slug="bad")
    api = api_client_for(annotator_user)
    task = next_task(api, study)["task"]
    if answers is not None and len(task["questions"]) == 3 and "1" in answers and "7" not in answers and "first" not in answers:
        answers["2"] = "yes"  # a three-question task: the question at fault stays question 1
    res = vote(api, study, task["assignment"], answers)
    assert res.status_code == 400
    expected = message.format(q0=task["questions"][0], q1=task["questions"][1])
    assert expected in res.json()["detail"]
    assert Vote.objects.count() == 0 and QuestionAnswer.objects.count() == 0
    assert Assignment.objects.get(pk=task["assignment"]).answered_at is None


def test_other_kinds_refuse_answers_to_questions_and_question_checks_refuse_a_plain_answer(make_study, annotator_user):
    study = make_study(kinds=("likert",), questions=QUESTIONS)
    api = api_client_for(annotator_user)
    task = next_task(api, study)["task"]
    assert task["kind"] == "likert" and task["questions"] == []
    res = vote(api, study, task["assignment"], {"0": "yes"}, answer="3")
    assert res.status_code == 400 and "taken only by question checks" in res.json()["detail"]
    qstudy = question_study(make_study)
    qtask = next_task(api, qstudy)["task"]
    res = vote(api, qstudy, qtask["assignment"], answer="good")
    assert res.status_code == 400 and "yes/no question" in res.json()["detail"]
    assert Vote.objects.count() == 0


def test_a_question_check_can_be_skipped(make_study, annotator_user):
    study = question_study(make_study)
    api = api_client_for(annotator_user)
    task = next_task(api, study)["task"]
    res = vote(api, study, task["assignment"], answer="skip")
    assert res.status_code == 200 and res.json()["skipped"] is True
    assert Assignment.objects.get(pk=task["assignment"]).skipped and Vote.objects.count() == 0


def test_the_voting_page_takes_the_answers_of_its_form(make_study, annotator_user):
    study = question_study(make_study)
    c = client_for(annotator_user)
    c.post(f"/vote/{study.slug}/start/")
    page = c.get(f"/vote/{study.slug}/").content.decode()
    import re

    a = Assignment.objects.get(pk=re.search(r'name="assignment" value="([0-9a-f-]+)"', page).group(1))
    questions = a.output_left.prompt.questions
    for i, q in enumerate(questions):
        assert q in page and f'name="q{i}"' in page
    assert f'name="q{len(questions)}"' not in page
    missing = c.post(f"/vote/{study.slug}/answer/", {"assignment": str(a.pk), "answer": "answers", "q0": "yes"},
                     HTTP_HX_REQUEST="true")
    assert missing.status_code == 400 and "has no answer" in missing.content.decode()
    form = {"assignment": str(a.pk), "answer": "answers", **{f"q{i}": "no" for i in range(len(questions))}}
    res = c.post(f"/vote/{study.slug}/answer/", form)
    assert res.status_code == 302
    assert list(QuestionAnswer.objects.values_list("answer", flat=True)) == [False] * len(questions)


@pytest.mark.parametrize(
    "persona,task_status,vote_status",
    [("admin", 200, 201), ("annotator", 200, 201), ("researcher", 403, 403), ("outsider", 403, 403), ("anonymous", 401, 401)],
)
def test_who_may_get_and_answer_a_question_check(personas, persona, task_status, vote_status, make_study):
    study = question_study(make_study)
    served = next_task(api_client_for(personas["annotator"]), study)["task"]
    c = api_client_for(personas[persona])
    assert c.get(f"/api/studies/{study.slug}/next-task/").status_code == task_status
    task = next_task(c, study)["task"] if task_status == 200 else served
    res = vote(c, study, task["assignment"], {str(i): "yes" for i in range(len(task["questions"]))})
    assert res.status_code == vote_status
    if persona != "annotator":
        # Nobody but the annotator it was served to answers it on the page either.
        page = client_for(personas[persona]).post(
            f"/vote/{study.slug}/answer/", {"assignment": served["assignment"], "q0": "yes", "q1": "yes", "q2": "yes"}
        )
        assert page.status_code in (401, 403, 404)
        assert not Vote.objects.filter(assignment_id=served["assignment"]).exists()


def test_a_question_check_never_names_the_generator(make_study, annotator_user):
    study = question_study(make_study, quota_per_annotator=8)
    api = api_client_for(annotator_user)
    c = client_for(annotator_user)
    c.post(f"/vote/{study.slug}/start/")
    for _ in range(4):
        page = c.get(f"/vote/{study.slug}/").content
        body = next_task(api, study)
        task = body["task"]
        images = b"".join(b"".join(api.get(img["url"]).streaming_content) for img in task["images"])
        blob = (page + json.dumps(body).encode() + images).lower()
        assert not any(name.encode() in blob for name in GENERATOR_NAMES)
        assert not any(name.encode() in page.lower() for name in (g.split("-")[0] for g in GENERATOR_NAMES))
        vote(api, study, task["assignment"], {str(i): "no" for i in range(len(task["questions"]))})


def test_question_checks_enter_no_rating_and_the_export_lists_their_answers(make_study, annotator_user, researcher):
    from ratings.exports import votes_export_rows
    from ratings.models import EloState
    from ratings.selectors import leaderboard_get
    from ratings.services import study_recompute

    study = question_study(make_study, kinds=("questions", "likert"), quota_per_annotator=12, block_size=3)
    api = api_client_for(annotator_user)
    body = next_task(api, study)
    kinds = []
    while body["task"] is not None:
        t = body["task"]
        kinds.append(t["kind"])
        if t["kind"] == "questions":
            res = vote(api, study, t["assignment"], {str(i): "yes" for i in range(len(t["questions"]))})
        else:
            res = vote(api, study, t["assignment"], answer="4")
        body = res.json()["next"]
    assert kinds.count("questions") == 6 and kinds.count("likert") == 6
    study_recompute(study_id=study.pk)
    board = leaderboard_get(study=study, criterion=study.criteria.get())
    assert board["totals"] == {"pairwise": 0, "likert": 6, "binary": 0} and board["votes_total"] == 6
    assert sum(r["likert"]["n"] for r in board["generators"] if r["likert"]) == 6
    assert sum(s.votes_applied for s in EloState.objects.filter(study=study)) == 0
    rows = [r for r in votes_export_rows(study=study) if r["kind"] == "questions"]
    assert len(rows) == 6
    for r in rows:
        questions = Output.objects.get(pk=r["output_left_id"]).prompt.questions
        assert json.loads(r["answer"]) == [{"question": q, "answer": "yes"} for q in questions]
    res = client_for(researcher).get(f"/api/studies/{study.slug}/export/votes/?format=csv")
    assert res.status_code == 200
    text = b"".join(res.streaming_content).decode()
    exported = [row for row in csv.DictReader(io.StringIO(text)) if row["kind"] == "questions"]
    assert len(exported) == 6 and all(json.loads(row["answer"])[0]["answer"] == "yes" for row in exported)


def test_setup_refuses_question_checks_without_questions_and_counts_their_items(make_study):
    plain = make_study(kinds=("questions",))
    cap = study_capacity_of(plain)
    assert "questions" in cap.errors["vote_kinds"].lower()
    study = question_study(make_study)
    cap = study_capacity_of(study)
    assert "vote_kinds" not in cap.errors
    assert cap.rows == [("Question checks", "all criteria", 2 * len(GENERATOR_NAMES))]


def test_staff_try_question_checks_as_annotators_meet_them_and_gold_tasks_cannot_be_question_checks(make_study, admin_user):
    from django.db import IntegrityError, transaction

    from arena.models import Criterion, GoldTask

    study = question_study(make_study)
    c = client_for(admin_user)
    for seed in range(6):
        html = c.get(f"/staff/studies/{study.slug}/try/?seed={seed}").content.decode()
        assert 'data-kind="questions"' in html and "Send answers" in html
        assert any(q in html for qs in QUESTIONS.values() for q in qs)
        assert not any(name in html for name in GENERATOR_NAMES)
    assert Assignment.objects.count() == 0
    both = question_study(make_study, kinds=("questions", "likert"))
    page = c.get(f"/staff/studies/{both.slug}/edit/").content.decode()
    select = page[page.index('name="kind"'):]
    select = select[: select.index("</select>")]
    assert 'value="likert"' in select and 'value="questions"' not in select  # no gold question checks
    output = Output.objects.exclude(prompt__questions=[]).first()
    with pytest.raises(IntegrityError), transaction.atomic():
        GoldTask.objects.create(study=study, criterion=Criterion.objects.get(slug="aesthetics"), kind="questions",
                                output=output, expected_answer="yes")
