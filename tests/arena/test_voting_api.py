"""Voting through the REST API: same rules, same blindness."""

import json

import pytest

from arena.models import Vote
from tests.conftest import GENERATOR_NAMES, api_client_for

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "persona,expected", [("admin", 200), ("annotator", 200), ("researcher", 403), ("outsider", 403), ("anonymous", 401)]
)
def test_who_may_get_a_task_from_the_api(personas, persona, expected, make_study):
    study = make_study()
    assert api_client_for(personas[persona]).get(f"/api/studies/{study.slug}/next-task/").status_code == expected


def test_api_tasks_never_name_the_generator_and_votes_round_trip(annotator_user, make_study):
    study = make_study(reveal_after_vote=False)
    c = api_client_for(annotator_user)
    body = c.get(f"/api/studies/{study.slug}/next-task/").json()
    for n in range(1, 11):
        text = json.dumps(body).lower()
        assert not any(name in text for name in GENERATOR_NAMES)
        task = body["task"]
        answer = {"likert": "2", "binary": "bad", "pairwise": "right"}[task["kind"]]
        res = c.post(f"/api/studies/{study.slug}/votes/", {"assignment": task["assignment"], "answer": answer}, format="json")
        assert res.status_code == 201
        body = res.json()["next"]
        assert body["progress"]["done"] == n
    assert Vote.objects.count() == 10


def test_an_api_retry_is_stored_once_and_a_bad_answer_gets_400(annotator_user, make_study):
    study = make_study(kinds=("pairwise",))
    c = api_client_for(annotator_user)
    task = c.get(f"/api/studies/{study.slug}/next-task/").json()["task"]
    bad = c.post(f"/api/studies/{study.slug}/votes/", {"assignment": task["assignment"], "answer": "up"}, format="json")
    assert bad.status_code == 400 and "not valid for a pairwise task" in bad.json()["detail"]
    r1 = c.post(f"/api/studies/{study.slug}/votes/", {"assignment": task["assignment"], "answer": "tie"}, format="json")
    r2 = c.post(f"/api/studies/{study.slug}/votes/", {"assignment": task["assignment"], "answer": "tie"}, format="json")
    assert (r1.status_code, r2.status_code) == (201, 200)
    assert r1.json()["next"]["task"]["assignment"] == r2.json()["next"]["task"]["assignment"]
    assert Vote.objects.count() == 1


def test_a_scripts_image_addresses_work_with_its_token_and_nobody_elses(make_study, annotator_user, django_user_model):
    from django.contrib.auth.models import Group

    from tests.conftest import api_client_for

    study = make_study(kinds=("pairwise",))
    api = api_client_for(annotator_user)
    task = api.get(f"/api/studies/{study.slug}/next-task/").json()["task"]
    urls = [img["url"] for img in task["images"]]
    assert len(urls) == 2 and all(u.startswith(f"/vote/{study.slug}/image/{task['assignment']}/") for u in urls)
    for url in urls:
        res = api.get(url)
        assert res.status_code == 200 and res["Content-Type"] == "image/webp"
    stranger = django_user_model.objects.create_user("sam", password="pw-sam-12345")
    stranger.groups.add(Group.objects.get(name="annotator"))
    assert all(api_client_for(stranger).get(u).status_code == 404 for u in urls)


def test_a_vote_nested_too_deeply_for_the_json_decoder_is_refused_with_a_parse_error(annotator_user, make_study):
    study = make_study()
    c = api_client_for(annotator_user)
    task = c.get(f"/api/studies/{study.slug}/next-task/").json()["task"]
    for nested in ("[" * 5000 + "]" * 5000, '{"0": ' * 5000 + '"yes"' + "}" * 5000):
        body = f'{{"assignment": "{task["assignment"]}", "answer": {nested}}}'
        res = c.post(f"/api/studies/{study.slug}/votes/", body, content_type="application/json")
        assert res.status_code == 400
        assert res.json()["detail"] == "JSON parse error - nested too deeply"
    assert not Vote.objects.exists()
    res = c.post(f"/api/studies/{study.slug}/votes/", {"assignment": task["assignment"], "answer": "skip"}, format="json")
    assert res.status_code == 200 and res.json()["skipped"]  # the task was left as it was
