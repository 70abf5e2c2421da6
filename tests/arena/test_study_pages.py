"""Staff set up studies in the browser's forms; researchers read their progress; flags are reviewed."""

import pytest

from arena.models import Criterion, Flag, GoldTask, Output, Study, Vote
from tests.conftest import client_for

pytestmark = pytest.mark.django_db


def _setup_post(study_outputs_from, **over):
    gens = sorted({o.generator_id for o in study_outputs_from})
    data = {
        "name": "Fresh study", "slug": "fresh-study", "instructions": "Look closely.",
        "vote_kinds": ["likert", "pairwise"], "criteria": [Criterion.objects.get(slug="aesthetics").pk],
        "generators": gens, "quota_per_annotator": 5, "overlap_target": 3, "calibration_items": 0,
        "calibration_annotators": 3, "min_votes_per_generator": 10, "bootstrap_unit": "votes", "gold_rate": 0,
        "sampler": "uniform", "display_long_side": 512, "completion_code": "DONE42", "is_open": "on",
    }
    data.update(over)
    return data


def _cast(study, user, n: int, answer: str):
    """`n` votes by one annotator through the voting services; returns the annotator."""
    from arena.voting import annotator_for_user, vote_record
    from tests.conftest import task_next

    annotator = annotator_for_user(user)
    for _ in range(n):
        a, _ = task_next(study=study, annotator=annotator)
        vote_record(assignment_id=a.pk, annotator=annotator, answer=answer, study=study)
    return annotator


PAGES = [
    ("get", "/staff/studies/new/"),
    ("get", "/staff/studies/{slug}/edit/"),
    ("get", "/staff/studies/{slug}/try/"),
    ("get", "/staff/studies/{slug}/flags/"),
    ("post", "/staff/studies/preview/"),
]


@pytest.mark.parametrize("method,url", PAGES)
def test_staff_pages_open_to_admins_only(method, url, personas, make_study):
    study = make_study(prompts=2)
    expected = {"admin": 200, "researcher": 403, "annotator": 403, "outsider": 403, "anonymous": 302}
    for name, user in personas.items():
        response = getattr(client_for(user), method)(url.format(slug=study.slug))
        assert response.status_code == expected[name], (name, url)
        if name == "anonymous":
            assert response["Location"].startswith("/accounts/login/")


def test_the_overview_is_for_researchers_and_staff(personas, make_study):
    study = make_study(prompts=2)
    expected = {"admin": 200, "researcher": 200, "annotator": 403, "outsider": 403, "anonymous": 302}
    for name, user in personas.items():
        response = client_for(user).get(f"/studies/{study.slug}/")
        assert response.status_code == expected[name], name
    forbidden = client_for(personas["outsider"]).get(f"/studies/{study.slug}/")
    assert "researchers and staff" in forbidden.content.decode()
    assert "Back to the start page" in forbidden.content.decode()


def test_the_api_page_needs_a_sign_in_and_loads_swagger_from_our_own_files(personas):
    for name, user in personas.items():
        response = client_for(user).get("/api/docs/")
        if user is None:
            assert response.status_code == 302
        else:
            html = response.content.decode()
            assert response.status_code == 200
            assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in html
            assert "cdn" not in html.lower()


def test_a_staff_member_creates_a_study_from_the_form_and_it_serves_those_outputs(admin_user, make_study):
    source = make_study(prompts=3, slug="source")
    outputs = list(Output.objects.filter(generator__studies=source))
    response = client_for(admin_user).post("/staff/studies/new/", _setup_post(outputs, new_criterion_name="Realism",
                                                                            new_pairwise_question="Which looks more real?"))
    assert response.status_code == 302
    study = Study.objects.get(slug="fresh-study")
    assert sorted(study.vote_kinds) == ["likert", "pairwise"]
    assert {c.name for c in study.criteria.all()} == {"Aesthetics", "Realism"} or "Realism" in {c.name for c in study.criteria.all()}
    assert study.criteria.get(name="Realism").pairwise_question == "Which looks more real?"
    assert study.generators.count() == 4
    page = client_for(admin_user).get(f"/staff/studies/{study.slug}/edit/").content.decode()
    # 4 generators x 3 prompts: 12 outputs; 6 pairs per prompt, 18 pairs; 2 criteria x (12 + 18) = 60 tasks.
    assert 'id="tasks-per-annotator">60<' in page


def test_a_quota_the_outputs_cannot_satisfy_is_refused_with_the_reason_and_nothing_is_saved(admin_user, make_study):
    source = make_study(prompts=2, slug="source")
    outputs = list(Output.objects.filter(generator__studies=source))
    # 8 outputs, likert only, one criterion: 8 tasks per annotator.
    response = client_for(admin_user).post("/staff/studies/new/", _setup_post(outputs, vote_kinds=["likert"], quota_per_annotator=9))
    assert response.status_code == 400
    html = response.content.decode()
    assert "A quota of 9 tasks is more than the 8 one annotator can get" in html
    assert not Study.objects.filter(slug="fresh-study").exists()
    preview = client_for(admin_user).post("/staff/studies/preview/", _setup_post(outputs, vote_kinds=["likert"], quota_per_annotator=9))
    assert "A quota of 9 tasks is more than the 8" in preview.content.decode()
    ok = client_for(admin_user).post("/staff/studies/preview/", _setup_post(outputs, vote_kinds=["likert"], quota_per_annotator=8))
    assert "can serve this study" in ok.content.decode()


def test_calibration_asking_more_annotators_than_the_overlap_is_refused(admin_user, make_study):
    source = make_study(prompts=2, slug="source")
    outputs = list(Output.objects.filter(generator__studies=source))
    response = client_for(admin_user).post("/staff/studies/new/", _setup_post(
        outputs, calibration_items=2, calibration_annotators=4, overlap_target=2))
    assert response.status_code == 400
    assert "more than the overlap target of 2" in response.content.decode()


def test_trying_a_study_as_annotator_stores_nothing(admin_user, make_study):
    from arena.models import Assignment

    study = make_study(prompts=2)
    c = client_for(admin_user)
    for seed in range(6):
        html = c.get(f"/staff/studies/{study.slug}/try/?seed={seed}").content.decode()
        assert "/media/display/" in html
        assert "nothing you click here is stored" in html
    assert Assignment.objects.count() == 0 and Vote.objects.count() == 0


def test_a_gold_task_is_added_by_picking_images(admin_user, make_study):
    study = make_study(prompts=2, kinds=("binary",))
    output = Output.objects.filter(generator__studies=study).first()
    response = client_for(admin_user).post(f"/staff/studies/{study.slug}/gold/", {
        "kind": "binary", "criterion": study.criteria.first().pk, "output": output.pk, "expected_answer": "bad"})
    assert response.status_code == 302
    gold = GoldTask.objects.get(study=study)
    assert (gold.output_id, gold.expected_answer) == (output.pk, "bad")
    wrong = client_for(admin_user).post(f"/staff/studies/{study.slug}/gold/", {
        "kind": "binary", "criterion": study.criteria.first().pk, "output": output.pk, "expected_answer": "3"})
    assert wrong.status_code == 400 and "answer good or bad" in wrong.content.decode()


def test_the_studies_list_shows_votes_annotators_and_completion(researcher, make_study, annotator_user):
    study = make_study(prompts=2, kinds=("likert",), quota_per_annotator=2)
    _cast(study, annotator_user, 2, "3")
    html = client_for(researcher).get("/leaderboard/").content.decode()
    row = html.split(f'data-study="{study.slug}"')[1].split("</tr>")[0]
    cells = [c.split(">", 1)[1].split("<")[0].strip() for c in row.split('<td class="num"')[1:]]
    assert cells[:3] == ["2", "1", "1"]
    overview = client_for(researcher).get(f"/studies/{study.slug}/").content.decode()
    assert 'id="votes-total">2' in overview and 'id="completed">1<' in overview
    assert "<svg" in overview


def test_a_withdrawn_output_leaves_every_number_but_keeps_its_votes(admin_user, make_study, annotator_user,
                                                                  django_capture_on_commit_callbacks):
    from arena.selectors import withdrawn_output_ids
    from ratings.selectors import leaderboard_get
    from ratings.services import study_recompute

    study = make_study(prompts=2, kinds=("likert",), quota_per_annotator=8)
    annotator = _cast(study, annotator_user, 8, "4")
    victim = Vote.objects.filter(study=study).first().output_left
    Flag.objects.create(output=victim, annotator=annotator, assignment=Vote.objects.filter(output_left=victim).first().assignment,
                        reason="broken")
    criterion = study.criteria.first()
    study_recompute(study_id=study.pk)
    before = leaderboard_get(study=study, criterion=criterion)["totals"]["likert"]
    page = client_for(admin_user).get(f"/staff/studies/{study.slug}/flags/").content.decode()
    assert victim.image.url in page and victim.prompt.text in page and "Broken" in page
    with django_capture_on_commit_callbacks(execute=True):
        client_for(admin_user).post(f"/staff/studies/{study.slug}/flags/{victim.pk}/withdraw/", {"action": "withdraw", "reason": "broken"})
    assert withdrawn_output_ids(study) == {victim.pk}
    after = leaderboard_get(study=study, criterion=criterion)["totals"]["likert"]
    assert after == before - 1
    assert Vote.objects.filter(study=study).count() == 8
    with django_capture_on_commit_callbacks(execute=True):
        client_for(admin_user).post(f"/staff/studies/{study.slug}/flags/{victim.pk}/withdraw/", {"action": "restore"})
    assert leaderboard_get(study=study, criterion=criterion)["totals"]["likert"] == before


def test_styled_error_pages_say_why_and_link_back(outsider, settings):
    settings.DEBUG = False
    response = client_for(outsider).get("/no/such/page/")
    html = response.content.decode()
    assert response.status_code == 404 and "Nothing here" in html and 'href="/"' in html
    denied = client_for(outsider).get("/staff/uploads/")
    assert denied.status_code == 403 and "You cannot open this page" in denied.content.decode()
    assert "favicon.svg" in html


def test_online_elo_is_replayed_without_a_withdrawn_outputs_votes(admin_user, make_study, annotator_user,
                                                                  django_capture_on_commit_callbacks):
    from ratings.models import EloState
    from ratings.services import elo_apply

    study = make_study(prompts=3, kinds=("pairwise",), quota_per_annotator=10)
    _cast(study, annotator_user, 10, "left")
    criterion = study.criteria.first()
    elo_apply(study_id=study.pk, criterion_id=criterion.pk)
    assert EloState.objects.get(study=study).votes_applied == 10
    victim = Vote.objects.filter(study=study).first().output_left
    touching = Vote.objects.filter(study=study, output_left=victim).count() + Vote.objects.filter(study=study, output_right=victim).count()
    with django_capture_on_commit_callbacks(execute=True):
        client_for(admin_user).post(f"/staff/studies/{study.slug}/flags/{victim.pk}/withdraw/", {"action": "withdraw"})
    assert EloState.objects.get(study=study).votes_applied == 10 - touching


def test_the_top_bar_links_studies_for_researchers_and_staff_only(personas):
    for name, user in personas.items():
        html = client_for(user).get("/").content.decode()
        assert ('href="/leaderboard/">Studies<' in html) == (name in ("admin", "researcher")), name
        assert ('href="/staff/studies/new/"' in html) == (name == "admin"), name


def test_staff_actions_refuse_everyone_else_and_change_nothing(personas, make_study):
    from arena.models import WithdrawnOutput

    study = make_study(prompts=2, kinds=("binary",))
    output = Output.objects.filter(generator__studies=study).first()
    gold = {"kind": "binary", "criterion": study.criteria.first().pk, "output": output.pk, "expected_answer": "good"}
    for name, user in personas.items():
        if name == "admin":
            continue
        c = client_for(user)
        refused = [
            c.post(f"/staff/studies/{study.slug}/gold/", gold),
            c.post(f"/staff/studies/{study.slug}/flags/{output.pk}/withdraw/", {"action": "withdraw"}),
            c.post("/staff/studies/new/", {"name": "x", "slug": "sneaky"}),
        ]
        assert [r.status_code for r in refused] == [302 if user is None else 403] * 3, name
    assert not GoldTask.objects.exists() and not WithdrawnOutput.objects.exists()
    assert not Study.objects.filter(slug="sneaky").exists()
    admin = client_for(personas["admin"])
    assert admin.post(f"/staff/studies/{study.slug}/gold/", gold).status_code == 302
    assert admin.post(f"/staff/studies/{study.slug}/flags/{output.pk}/withdraw/", {"action": "withdraw"}).status_code == 302
    assert GoldTask.objects.count() == 1 and WithdrawnOutput.objects.filter(study=study, output=output).exists()


def test_preference_pairs_leave_out_a_withdrawn_output(make_study, annotator_user):
    from ratings.exports import preferences_count
    from arena.services import output_withdrawal_set

    study = make_study(prompts=2, kinds=("pairwise",), quota_per_annotator=6)
    _cast(study, annotator_user, 6, "right")
    criterion = study.criteria.first()
    assert preferences_count(study=study, criterion=criterion) == 6
    victim = Vote.objects.filter(study=study).first().output_right
    touching = Vote.objects.filter(study=study).filter(output_left=victim).count() + Vote.objects.filter(
        study=study, output_right=victim).count()
    output_withdrawal_set(study=study, output=victim, withdrawn=True, reason="unsafe")
    assert preferences_count(study=study, criterion=criterion) == 6 - touching
