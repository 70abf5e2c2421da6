"""Serving tasks and recording votes: integrity, blindness, position-bias control, assignment rules."""

import re
import uuid
from collections import Counter, defaultdict
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from scipy.stats import binom

from arena.models import Annotator, Assignment, Flag, GoldTask, Output, Vote
from arena.voting import annotator_for_user, vote_record
from tests.conftest import task_next
from tests.conftest import GENERATOR_NAMES, client_for

pytestmark = pytest.mark.django_db


def started_client(user, study) -> Client:
    c = client_for(user)
    c.post(f"/vote/{study.slug}/start/")
    return c


def current_assignment(page: str) -> str:
    return re.search(r'name="assignment" value="([0-9a-f-]{36})"', page).group(1)


def test_the_instructions_come_first_then_a_task(annotator_user, make_study):
    study = make_study(instructions="Look closely at hands and faces.")
    c = client_for(annotator_user)
    first = c.get(f"/vote/{study.slug}/").content.decode()
    assert "Look closely at hands and faces." in first and 'id="start"' in first
    assert 'name="assignment"' not in first
    c.post(f"/vote/{study.slug}/start/")
    page = c.get(f"/vote/{study.slug}/").content.decode()
    assert 'name="assignment"' in page
    assert "0 / 50" in page


@pytest.mark.parametrize(
    "persona,expected", [("admin", 200), ("annotator", 200), ("researcher", 403), ("outsider", 403), ("anonymous", 302)]
)
def test_who_may_open_the_voting_page(personas, persona, expected, make_study):
    study = make_study()
    res = client_for(personas[persona]).get(f"/vote/{study.slug}/")
    assert res.status_code == expected


@pytest.mark.parametrize("kind,answer,field,value", [
    ("likert", "4", "score", 4), ("binary", "bad", "score", 0), ("pairwise", "right", "choice", "right"),
])
def test_each_vote_kind_is_stored_with_its_answer_and_mapping(annotator_user, make_study, kind, answer, field, value):
    study = make_study(kinds=(kind,))
    c = started_client(annotator_user, study)
    aid = current_assignment(c.get(f"/vote/{study.slug}/").content.decode())
    res = c.post(f"/vote/{study.slug}/answer/", {"assignment": aid, "answer": answer})
    assert res.status_code == 302
    vote = Vote.objects.get()
    a = Assignment.objects.get(pk=aid)
    assert getattr(vote, field) == value and vote.kind == kind
    assert vote.output_left_id == a.output_left_id and vote.output_right_id == a.output_right_id
    assert vote.generator_left_id == a.output_left.generator_id
    assert vote.response_ms >= 0
    if kind == "pairwise":
        assert a.output_left.prompt_id == a.output_right.prompt_id
        assert a.output_left.generator_id != a.output_right.generator_id


def test_the_htmx_answer_swaps_in_the_next_task(annotator_user, make_study):
    study = make_study()
    c = started_client(annotator_user, study)
    page = c.get(f"/vote/{study.slug}/").content.decode()
    aid = current_assignment(page)
    kind = Assignment.objects.get(pk=aid).kind
    answer = {"likert": "3", "binary": "good", "pairwise": "tie"}[kind]
    frag = c.post(f"/vote/{study.slug}/answer/", {"assignment": aid, "answer": answer}, HTTP_HX_REQUEST="true").content.decode()
    assert frag.lstrip().startswith('<div id="task"') and "<html" not in frag
    assert current_assignment(frag) != aid
    assert "1 / 50" in frag


# --------------------------------------------------------------------------- integrity


def serve(study, user):
    annotator = annotator_for_user(user)
    a, _ = task_next(study=study, annotator=annotator, ahead=0)
    return annotator, a


def valid_answer(a):
    return {"likert": "5", "binary": "good", "pairwise": "left"}[a.kind]


def test_the_same_vote_twice_is_stored_once_and_gets_the_same_next_task(annotator_user, make_study):
    study = make_study()
    c = started_client(annotator_user, study)
    aid = current_assignment(c.get(f"/vote/{study.slug}/").content.decode())
    answer = valid_answer(Assignment.objects.get(pk=aid))
    r1 = c.post(f"/vote/{study.slug}/answer/", {"assignment": aid, "answer": answer}, HTTP_HX_REQUEST="true")
    r2 = c.post(f"/vote/{study.slug}/answer/", {"assignment": aid, "answer": answer}, HTTP_HX_REQUEST="true")
    assert r1.status_code == r2.status_code == 200
    assert Vote.objects.count() == 1
    assert current_assignment(r1.content.decode()) == current_assignment(r2.content.decode())


def test_a_replayed_assignment_with_another_answer_is_refused(annotator_user, make_study):
    study = make_study(kinds=("pairwise",))
    c = started_client(annotator_user, study)
    aid = current_assignment(c.get(f"/vote/{study.slug}/").content.decode())
    c.post(f"/vote/{study.slug}/answer/", {"assignment": aid, "answer": "left"})
    res = c.post(f"/vote/{study.slug}/answer/", {"assignment": aid, "answer": "right"})
    assert res.status_code == 409
    assert Vote.objects.get().choice == "left"


def test_a_forged_assignment_id_is_refused(annotator_user, make_study):
    study = make_study()
    c = started_client(annotator_user, study)
    for forged in (str(uuid.uuid4()), "1", "' OR 1=1 --", ""):
        res = c.post(f"/vote/{study.slug}/answer/", {"assignment": forged, "answer": "left"})
        assert res.status_code == 404
    assert Vote.objects.count() == 0


def test_another_annotators_assignment_is_refused(annotator_user, django_user_model, make_study):
    from django.contrib.auth.models import Group

    study = make_study()
    other = django_user_model.objects.create_user("bea", password="x")
    other.groups.add(Group.objects.get(name="annotator"))
    _, theirs = serve(study, other)
    c = started_client(annotator_user, study)
    res = c.post(f"/vote/{study.slug}/answer/", {"assignment": str(theirs.pk), "answer": valid_answer(theirs)})
    assert res.status_code == 404
    assert Vote.objects.count() == 0
    assert Assignment.objects.get(pk=theirs.pk).answered_at is None


@pytest.mark.parametrize("kind,bad", [("likert", "6"), ("likert", "0"), ("binary", "maybe"), ("pairwise", "middle"), ("pairwise", "")])
def test_an_out_of_range_answer_is_refused(annotator_user, make_study, kind, bad):
    study = make_study(kinds=(kind,))
    c = started_client(annotator_user, study)
    aid = current_assignment(c.get(f"/vote/{study.slug}/").content.decode())
    res = c.post(f"/vote/{study.slug}/answer/", {"assignment": aid, "answer": bad})
    assert res.status_code == 400
    assert "is not valid for a" in res.content.decode()
    assert Vote.objects.count() == 0
    assert Assignment.objects.get(pk=aid).answered_at is None


def test_an_expired_assignment_is_refused(annotator_user, make_study):
    study = make_study()
    annotator, a = serve(study, annotator_user)
    Assignment.objects.filter(pk=a.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    c = started_client(annotator_user, study)
    res = c.post(f"/vote/{study.slug}/answer/", {"assignment": str(a.pk), "answer": valid_answer(a)})
    assert res.status_code == 410
    assert Vote.objects.count() == 0


def test_a_vote_without_csrf_is_refused(annotator_user, make_study):
    study = make_study()
    _, a = serve(study, annotator_user)
    c = Client(enforce_csrf_checks=True)
    c.force_login(annotator_user)
    res = c.post(f"/vote/{study.slug}/answer/", {"assignment": str(a.pk), "answer": valid_answer(a)})
    assert res.status_code == 403
    assert Vote.objects.count() == 0


def test_one_vote_per_assignment_is_a_database_constraint(annotator_user, make_study):
    from django.db import IntegrityError, transaction

    study = make_study(kinds=("pairwise",))
    annotator, a = serve(study, annotator_user)
    vote_record(study=a.study, assignment_id=a.pk, annotator=annotator, answer="left")
    v = Vote.objects.get()
    with pytest.raises(IntegrityError), transaction.atomic():
        Vote.objects.create(
            assignment=a, study=study, criterion=a.criterion, annotator=annotator, kind="pairwise",
            output_left=a.output_left, output_right=a.output_right, generator_left=v.generator_left,
            generator_right=v.generator_right, choice="right", response_ms=1,
        )
    assert Vote.objects.count() == 1


# --------------------------------------------------------------------------- blindness


def test_nothing_served_before_the_vote_names_the_generator(annotator_user, make_study):
    study = make_study(reveal_after_vote=False)
    c = started_client(annotator_user, study)
    for _ in range(12):
        page = c.get(f"/vote/{study.slug}/").content.decode()
        lowered = page.lower()
        for name in GENERATOR_NAMES:
            assert name not in lowered
        assert "/media/" not in page
        for url in re.findall(r'src="(/vote/[^"]+)"', page):
            assert re.fullmatch(rf"/vote/{study.slug}/image/[0-9a-f-]{{36}}/(left|right|single)/", url)
        aid = current_assignment(page)
        c.post(f"/vote/{study.slug}/answer/", {"assignment": aid, "answer": valid_answer(Assignment.objects.get(pk=aid))})


def test_a_study_may_reveal_the_generators_after_the_vote(annotator_user, make_study):
    study = make_study(kinds=("pairwise",), reveal_after_vote=True)
    c = started_client(annotator_user, study)
    aid = current_assignment(c.get(f"/vote/{study.slug}/").content.decode())
    a = Assignment.objects.get(pk=aid)
    frag = c.post(f"/vote/{study.slug}/answer/", {"assignment": aid, "answer": "tie"}, HTTP_HX_REQUEST="true").content.decode()
    # The names go under the images just judged, not above the next task.
    assert 'id="revealed"' in frag and 'name="assignment"' not in frag
    assert f'<strong class="generator">{a.output_left.generator.name}</strong> (left)' in frag
    assert f'<strong class="generator">{a.output_right.generator.name}</strong> (right)' in frag
    nxt = c.get(f"/vote/{study.slug}/", HTTP_HX_REQUEST="true").content.decode()
    assert 'name="assignment"' in nxt and 'class="generator"' not in nxt


# --------------------------------------------------------------------------- assignment rules


def test_left_side_is_a_fair_coin_for_every_generator(make_study, django_user_model):
    study = make_study(kinds=("pairwise",), prompts=20, overlap_target=1000, quota_per_annotator=10_000)
    left, shown = Counter(), Counter()
    served = 0
    annotators = [Annotator.objects.create() for _ in range(30)]
    while served < 2000:
        for annotator in annotators:
            a, _ = task_next(study=study, annotator=annotator, ahead=0)
            if a is None:
                continue
            Assignment.objects.filter(pk=a.pk).update(answered_at=timezone.now(), skipped=True)
            served += 1
            gl, gr = a.output_left.generator.name, a.output_right.generator.name
            left[gl] += 1
            shown[gl] += 1
            shown[gr] += 1
        if all(task_next(study=study, annotator=x, ahead=0)[0] is None for x in annotators[:1]):
            annotators += [Annotator.objects.create() for _ in range(10)]
    for name in GENERATOR_NAMES:
        n = shown[name]
        lo, hi = binom.ppf(0.0005, n, 0.5), binom.ppf(0.9995, n, 0.5)
        assert lo <= left[name] <= hi, (name, left[name], n)
    # every generator pair was compared
    pairs = Counter()
    for a in Assignment.objects.filter(study=study).select_related("output_left", "output_right"):
        pairs[frozenset((a.output_left.generator_id, a.output_right.generator_id))] += 1
    assert len(pairs) == len(GENERATOR_NAMES) * (len(GENERATOR_NAMES) - 1) // 2


def test_an_annotator_never_gets_the_same_item_twice(annotator_user, make_study):
    study = make_study(prompts=2, quota_per_annotator=1000)
    annotator = annotator_for_user(annotator_user)
    keys = []
    while True:
        a, _ = task_next(study=study, annotator=annotator, ahead=0)
        if a is None:
            break
        keys.append(a.item_key)
        vote_record(study=a.study, assignment_id=a.pk, annotator=annotator, answer="skip")
    assert len(keys) == len(set(keys))
    # 8 outputs x (likert, binary) + 6 generator pairs x 2 prompts (one output each)
    assert len(keys) == 8 * 2 + 6 * 2


def test_items_reach_the_overlap_target_fewest_votes_first(make_study):
    study = make_study(kinds=("likert",), prompts=2, overlap_target=3)
    n_items = Output.objects.count()
    annotators = [Annotator.objects.create() for _ in range(3)]
    per_item = defaultdict(set)
    for annotator in annotators:
        for _ in range(n_items):
            a, _ = task_next(study=study, annotator=annotator, ahead=0)
            vote_record(study=a.study, assignment_id=a.pk, annotator=annotator, answer="3")
            per_item[a.item_key].add(annotator.pk)
    assert len(per_item) == n_items
    assert all(len(v) == 3 for v in per_item.values())
    # Every item has its three annotators: a fourth is told there is nothing left, not served a fourth answer.
    late = Annotator.objects.create()
    a, _ = task_next(study=study, annotator=late, ahead=0)
    assert a is None


def test_items_answered_to_the_target_are_not_counted_again(make_study):
    """Once the sampler has found an item answered `overlap_target` times, later picks skip it
    without asking the database how many annotators it has (a full study costs no scans)."""
    study = make_study(kinds=("likert",), prompts=2, overlap_target=2)
    n_items = Output.objects.count()
    for annotator in [Annotator.objects.create() for _ in range(2)]:
        for _ in range(n_items):
            a, _ = task_next(study=study, annotator=annotator, ahead=0)
            vote_record(study=a.study, assignment_id=a.pk, annotator=annotator, answer="3")
    assert task_next(study=study, annotator=Annotator.objects.create(), ahead=0)[0] is None
    with CaptureQueriesContext(connection) as ctx:
        assert task_next(study=study, annotator=Annotator.objects.create(), ahead=0)[0] is None
    counting = [q["sql"] for q in ctx.captured_queries if "count(DISTINCT" in q["sql"]]
    assert counting == []


def test_fewest_votes_first_spreads_the_first_annotators_over_items(make_study):
    study = make_study(kinds=("binary",), prompts=2, overlap_target=2)
    n_items = Output.objects.count()
    seen = Counter()
    for _ in range(n_items):
        annotator = Annotator.objects.create()
        a, _ = task_next(study=study, annotator=annotator, ahead=0)
        seen[a.item_key] += 1
    assert len(seen) == n_items and set(seen.values()) == {1}


def test_the_next_tasks_images_are_preloaded(annotator_user, make_study):
    study = make_study()
    c = started_client(annotator_user, study)
    page = c.get(f"/vote/{study.slug}/").content.decode()
    preload = page.split('class="preload"', 1)[1]
    aid = current_assignment(page)
    nxt = Assignment.objects.filter(annotator__user=annotator_user).exclude(pk=aid).get()
    assert f"/vote/{study.slug}/image/{nxt.pk}/" in preload
    frag = c.post(f"/vote/{study.slug}/answer/", {"assignment": aid, "answer": valid_answer(Assignment.objects.get(pk=aid))},
                  HTTP_HX_REQUEST="true").content.decode()
    assert current_assignment(frag) == str(nxt.pk)


# --------------------------------------------------------------------------- crowd workers, quota, gold, flags


def test_a_prolific_link_creates_a_pseudonymous_annotator_and_ends_with_the_completion_code(make_study):
    study = make_study(kinds=("binary",), quota_per_annotator=3, prolific_completion_url="https://app.prolific.com/submissions/complete?cc=XYZ")
    c = Client()
    page = c.get(f"/vote/{study.slug}/?PROLIFIC_PID=5f1e2d&STUDY_ID=st1&SESSION_ID=se1")
    assert page.status_code == 200
    annotator = Annotator.objects.get(external_id="5f1e2d")
    assert annotator.user is None and annotator.study == study and annotator.external_session_id == "se1"
    assert annotator.pseudonym.startswith("ann-") and "5f1e2d" not in annotator.pseudonym
    c.post(f"/vote/{study.slug}/start/")
    for _ in range(3):
        aid = current_assignment(c.get(f"/vote/{study.slug}/").content.decode())
        c.post(f"/vote/{study.slug}/answer/", {"assignment": aid, "answer": "good"})
    done = c.get(f"/vote/{study.slug}/").content.decode()
    assert f'id="completion-code">{study.completion_code}<' in done
    assert "https://app.prolific.com/submissions/complete?cc=XYZ" in done
    assert Vote.objects.filter(annotator=annotator).count() == 3
    # the same participant coming back is the same annotator
    Client().get(f"/vote/{study.slug}/?PROLIFIC_PID=5f1e2d")
    assert Annotator.objects.filter(external_id="5f1e2d").count() == 1


def test_gold_tasks_are_mixed_in_and_scored(annotator_user, make_study):
    study = make_study(kinds=("binary",), gold_rate=1.0)
    out = Output.objects.first()
    gold = GoldTask.objects.create(study=study, criterion=study.criteria.first(), kind="binary", output=out, expected_answer="bad")
    annotator, a = serve(study, annotator_user)
    assert a.gold_id == gold.pk and a.item_key == f"gold:{gold.pk}"
    vote_record(study=a.study, assignment_id=a.pk, annotator=annotator, answer="good")
    v = Vote.objects.get()
    assert v.is_gold and v.gold_correct is False


def test_an_annotator_can_flag_an_image(annotator_user, make_study, admin_user):
    study = make_study(kinds=("pairwise",))
    c = started_client(annotator_user, study)
    aid = current_assignment(c.get(f"/vote/{study.slug}/").content.decode())
    res = c.post(f"/vote/{study.slug}/flag/", {"assignment": aid, "side": "right", "reason": "biased"}, HTTP_HX_REQUEST="true")
    assert res.status_code == 200 and "flagged" in res.content.decode()
    flag = Flag.objects.get()
    assert flag.output_id == Assignment.objects.get(pk=aid).output_right_id and flag.reason == "biased"
    assert c.post(f"/vote/{study.slug}/flag/", {"assignment": aid, "reason": "ugly"}).status_code == 400
    listing = client_for(admin_user).get("/admin/arena/flag/").content.decode()
    assert "biased" in listing.lower()


def test_a_study_on_the_active_sampler_places_a_new_generator_first(make_study, tmp_path):
    from collections import Counter

    from arena.imports import outputs_import
    from arena.models import Study
    from ratings.services import study_recompute
    from tests.conftest import make_zip, manifest_jsonl, png_bytes

    study = make_study(kinds=("pairwise",), prompts=6, quota_per_annotator=1000, overlap_target=50)
    voters = [Annotator.objects.create() for _ in range(3)]
    for k in range(90):
        annotator = voters[k % 3]
        a, _ = task_next(study=study, annotator=annotator, ahead=0)
        vote_record(study=a.study, assignment_id=a.pk, annotator=annotator, answer="left")
    rows = [{"generator": "late-arrival", "prompt": f"{study.slug} prompt number {p}", "image": f"{p}.png"} for p in range(6)]
    files = {f"{p}.png": png_bytes(color=(250, 250, 5 * p)) for p in range(6)}
    files["manifest.jsonl"] = manifest_jsonl(rows)
    outputs_import(path=make_zip(tmp_path / "late.zip", files), study=study)
    study_recompute(study_id=study.pk)
    Study.objects.filter(pk=study.pk).update(sampler="active")
    study.refresh_from_db()
    from arena.voting import study_index_clear

    study_index_clear()
    with_newcomer = Counter()
    for _ in range(30):
        a, _ = task_next(study=study, annotator=Annotator.objects.create(), ahead=0)
        names = {a.output_left.generator.name, a.output_right.generator.name}
        with_newcomer["late-arrival" in names] += 1
    # uniform would pair the newcomer in 4 of 10 pairs (40 %); the active sampler puts it first
    assert with_newcomer[True] >= 24


def test_task_image_addresses_are_the_vote_image_urls_under_any_script_prefix(annotator_user, make_study):
    from django.urls import reverse, set_script_prefix

    from arena.voting import task_images

    study = make_study(kinds=("pairwise", "likert"), block_size=2)
    annotator = annotator_for_user(annotator_user)
    tasks = []
    for _ in range(6):
        current, _ahead = task_next(study=study, annotator=annotator)
        tasks.append(current)
        vote_record(assignment_id=current.pk, annotator=annotator, study=study,
                    answer={"pairwise": "left", "likert": "3", "binary": "good"}[current.kind])
    assert {t.kind for t in tasks} == {"pairwise", "likert"}
    try:
        for prefix in ("/", "/arena/"):
            set_script_prefix(prefix)
            for t in tasks:
                sides = ["left", "right"] if t.kind == "pairwise" else ["single"]
                assert [img["url"] for img in task_images(study, t)] == [
                    reverse("arena:vote_image", args=[study.slug, t.pk, side]) for side in sides]
                assert all(img["url"].startswith(f"{prefix}vote/{study.slug}/image/{t.pk}/") for img in task_images(study, t))
    finally:
        set_script_prefix("/")
