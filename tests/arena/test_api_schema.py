"""The OpenAPI schema documents the fields and status codes the API really answers with."""

import pytest

from arena.api_schema import LeaderboardSerializer, NextTaskSerializer, TaskSerializer, VoteResultSerializer
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db


def _schema(user):
    response = api_client_for(user).get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    import json

    return json.loads(response.content)


def test_the_schema_documents_board_export_and_upload_bodies_and_their_refusals(admin_user):
    schema = _schema(admin_user)
    paths = schema["paths"]
    board = paths["/api/studies/{slug}/leaderboard/"]["get"]["responses"]
    assert {"200", "401", "403", "404"} <= set(board)
    ref = board["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    props = schema["components"]["schemas"][ref]["properties"]
    assert {"generators", "totals", "computed_at", "elo_votes_applied"} <= set(props)
    row = schema["components"]["schemas"]["BoardRow"]["properties"]
    assert {"bt", "bt_low", "bt_high", "rank", "provisional", "elo"} <= set(row)
    export = paths["/api/studies/{slug}/export/votes/"]["get"]["responses"]
    assert {"200", "400", "401", "403", "404"} <= set(export)
    upload = paths["/api/uploads/"]["post"]["responses"]
    assert {"202", "400", "413"} <= set(upload)
    assert "file" in schema["components"]["schemas"]["UploadError"]["properties"]


def test_the_schema_is_for_signed_in_users_only():
    response = api_client_for(None).get("/api/schema/")
    assert response.status_code in (401, 403)


def _fields(serializer) -> set[str]:
    return set(serializer().fields)


def test_the_response_serializers_name_every_key_of_real_answers(make_study, researcher, annotator_user):
    from ratings.services import study_recompute

    study = make_study(prompts=2, kinds=("pairwise",), quota_per_annotator=3, reveal_after_vote=True)
    annotator = api_client_for(annotator_user)
    nxt = annotator.get(f"/api/studies/{study.slug}/next-task/").json()
    assert set(nxt) <= _fields(NextTaskSerializer)
    assert set(nxt["task"]) <= _fields(TaskSerializer)
    voted = annotator.post(f"/api/studies/{study.slug}/votes/", {"assignment": nxt["task"]["assignment"], "answer": "left"},
                           format="json")
    assert voted.status_code == 201
    assert set(voted.json()) <= _fields(VoteResultSerializer)
    study_recompute(study_id=study.pk)
    board = api_client_for(researcher).get(f"/api/studies/{study.slug}/leaderboard/").json()
    undocumented = set(board) - _fields(LeaderboardSerializer)
    assert not undocumented, undocumented
