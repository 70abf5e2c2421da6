"""Account hygiene: throttled sign-ins, expiring tokens, a private schema, JSON errors under /api/."""

from datetime import timedelta

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from arena.models import AuthFailure
from tests.conftest import api_client_for, client_for

pytestmark = pytest.mark.django_db


def test_the_login_form_answers_429_after_too_many_failures(settings, annotator_user):
    settings.ARENA_AUTH_MAX_FAILURES = 3
    c = client_for(None)
    for _ in range(3):
        res = c.post("/accounts/login/", {"username": "ann", "password": "wrong"})
        assert res.status_code == 200 and "didn't match" in res.content.decode()
    res = c.post("/accounts/login/", {"username": "ann", "password": "pw-annot-123"})  # right, but too late
    assert res.status_code == 429
    assert "Too many failed sign-ins. Try again in 15 minutes." in res.content.decode()
    assert int(res["Retry-After"]) > 0
    assert "_auth_user_id" not in c.session
    # Someone else, elsewhere, is not locked out by these failures.
    ok = client_for(None).post("/accounts/login/", {"username": "rosa-x", "password": "nope"}, REMOTE_ADDR="203.0.113.9")
    assert ok.status_code == 200
    # Nothing readable is kept about who failed.
    assert not AuthFailure.objects.filter(key__contains="ann").exists()


def test_the_token_endpoint_answers_429_after_too_many_failures(settings, annotator_user):
    settings.ARENA_AUTH_MAX_FAILURES = 2
    api = APIClient()
    for _ in range(2):
        res = api.post("/api/token/", {"username": "ann", "password": "bad"}, format="json")
        assert res.status_code == 400 and res.json()["detail"] == "Unable to log in with the user name and password given."
    res = api.post("/api/token/", {"username": "ann", "password": "pw-annot-123"}, format="json")
    assert res.status_code == 429 and res.json()["detail"].startswith("Too many failed sign-ins")
    assert not Token.objects.exists()


def test_tokens_expire_and_a_new_one_can_be_had(settings, annotator_user):
    settings.ARENA_TOKEN_TTL_HOURS = 2
    api = APIClient()
    res = api.post("/api/token/", {"username": "ann", "password": "pw-annot-123"}, format="json")
    assert res.status_code == 200
    key, expires = res.json()["token"], res.json()["expires_at"]
    assert expires is not None
    authed = APIClient()
    authed.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert authed.get("/api/uploads/").status_code == 403  # signed in (an annotator is not staff), not 401
    token = Token.objects.get(key=key)
    token.created -= timedelta(hours=3)
    token.save()  # a change made in this process: read afresh, not from the few seconds' memory
    res = authed.get("/api/uploads/")
    assert res.status_code == 401 and "token has expired" in res.json()["detail"]
    fresh = api.post("/api/token/", {"username": "ann", "password": "pw-annot-123"}, format="json").json()["token"]
    assert fresh != key
    authed.credentials(HTTP_AUTHORIZATION=f"Token {fresh}")
    assert authed.get("/api/uploads/").status_code == 403


def test_the_schema_is_for_signed_in_users_only(annotator_user):
    res = APIClient().get("/api/schema/")
    assert res.status_code in (401, 403) and res["Content-Type"].startswith("application/json")
    assert api_client_for(annotator_user).get("/api/schema/").status_code == 200


def test_api_errors_come_back_as_json(annotator_user, monkeypatch, make_study):
    res = client_for(annotator_user).get("/api/no-such-thing/")
    assert res.status_code == 404 and res.json() == {"detail": "Not found."}
    study = make_study()
    import arena.api

    def broken(**kwargs):
        raise RuntimeError("database on fire")

    monkeypatch.setattr(arena.api, "tasks_serve", broken)
    api = api_client_for(annotator_user)
    api.raise_request_exception = False
    res = api.get(f"/api/studies/{study.slug}/next-task/")
    assert res.status_code == 500 and res.json() == {"detail": "Internal server error."}
    assert "database on fire" not in res.content.decode()
