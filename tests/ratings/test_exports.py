"""Vote exports and preference pairs: what is written, who may read it, and the command line."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command
from PIL import Image as PILImage

from arena.models import Annotator, Assignment, Criterion, GoldTask, Output, Vote
from arena.voting import annotator_for_crowd, annotator_for_user, vote_record
from tests.conftest import task_next
from ratings.exports import preferences_export, votes_export, votes_export_rows
from tests.conftest import GENERATOR_NAMES, api_client_for, client_for

pytestmark = pytest.mark.django_db

VOTE_COLUMNS = [
    "vote_id", "study", "criterion", "kind", "annotator", "annotator_excluded", "prompt", "prompt_category",
    "output_left_id", "output_left_sha256", "generator_left", "output_right_id", "output_right_sha256",
    "generator_right", "answer", "left_output_id", "winner_output_id", "response_ms", "is_gold", "gold_correct",
    "served_at", "created_at", "elo_batch",
]
# The columns of yuvalkirstain/pickapic_v2 (its dataset card), and those Diffusion-DPO and PickScore read.
PICKAPIC_V2_COLUMNS = {
    "are_different", "best_image_uid", "caption", "created_at", "has_label", "image_0_uid", "image_0_url",
    "image_1_uid", "image_1_url", "jpg_0", "jpg_1", "label_0", "label_1", "model_0", "model_1", "ranking_id",
    "user_id", "num_example_per_prompt", "__index_level_0__",
}
TRAINING_COLUMNS = {"caption", "jpg_0", "jpg_1", "label_0", "label_1", "model_0", "model_1", "are_different", "has_label"}
PAIRWISE_ANSWERS = ["left", "right", "tie", "bothbad"]
LABELS = {"left": (1.0, 0.0), "right": (0.0, 1.0), "tie": (0.5, 0.5)}


@dataclass
class Voted:
    study: object
    answers: dict = field(default_factory=dict)  # assignment id -> the answer cast
    excluded: Annotator | None = None
    gold_vote: Vote | None = None
    private: list[str] = field(default_factory=list)  # what must never appear in an export


def cast_all(study, annotator, answers: dict, pairwise_counter: Counter) -> None:
    """Answer every task the study serves this annotator, cycling through every kind of answer."""
    while True:
        a, _ = task_next(study=study, annotator=annotator, ahead=0)
        if a is None:
            return
        if a.kind == "pairwise":
            answer = PAIRWISE_ANSWERS[pairwise_counter["n"] % 4]
            pairwise_counter["n"] += 1
        elif a.kind == "likert":
            answer = str(1 + len(answers) % 5)
        else:
            answer = ("good", "bad")[len(answers) % 2]
        vote_record(study=a.study, assignment_id=a.pk, annotator=annotator, answer=answer)
        answers[str(a.pk)] = answer


@pytest.fixture
def voted(make_study, django_user_model) -> Voted:
    """Two account annotators and one Prolific worker answer every task of a two-criterion study."""
    study = make_study(generators=GENERATOR_NAMES[:3], prompts=2, kinds=("pairwise", "likert", "binary"),
                       quota_per_annotator=500)
    study.criteria.add(Criterion.objects.get(slug="alignment"))
    result = Voted(study=study)
    annotators = []
    for name in ("alice", "bruno"):
        user = django_user_model.objects.create_user(f"username-{name}-q7", f"{name}.q7@mail.example.org", "pw")
        annotators.append(annotator_for_user(user))
        result.private += [user.username, user.email]
    crowd = annotator_for_crowd(study=study, participant_id="PROLIFICPID5f1e2d9ab", study_id="PSTUDYID77q",
                                session_id="PSESSIONID88r")
    annotators.append(crowd)
    result.private += ["PROLIFICPID5f1e2d9ab", "PSTUDYID77q", "PSESSIONID88r"]
    counter = Counter()
    for annotator in annotators:
        cast_all(study, annotator, result.answers, counter)
    # one gold pairwise task, answered by the first annotator
    left, right = Output.objects.filter(prompt__text__endswith="number 0")[:2]
    GoldTask.objects.create(study=study, criterion=Criterion.objects.get(slug="aesthetics"), kind="pairwise",
                            output=left, other_output=right, expected_answer="output")
    study.gold_rate = 1.0
    a, _ = task_next(study=study, annotator=annotators[0], ahead=0)
    assert a.gold_id is not None
    result.gold_vote = vote_record(study=a.study, assignment_id=a.pk, annotator=annotators[0], answer="left").vote
    result.answers[str(a.pk)] = "left"
    study.gold_rate = 0.0
    Annotator.objects.filter(pk=annotators[1].pk).update(excluded=True, excluded_reason="clicked at random")
    result.excluded = Annotator.objects.get(pk=annotators[1].pk)
    return result


@pytest.fixture
def small_voted(make_study, annotator_user):
    """A two-criterion pairwise study with a few votes, for permission and error checks."""
    study = make_study(generators=GENERATOR_NAMES[:3], prompts=1, kinds=("pairwise",))
    study.criteria.add(Criterion.objects.get(slug="alignment"))
    cast_all(study, annotator_for_user(annotator_user), {}, Counter())
    assert Vote.objects.filter(study=study, criterion__slug="aesthetics").exclude(choice="bothbad").exists()
    return study


# --------------------------------------------------------------------------- reading exports back


def _bool(value):
    return {"true": True, "false": False, "": None}[value] if isinstance(value, str) else value


def _int(value):
    return None if value in ("", None) else int(value)


def _time(value):
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def read_votes(fmt: str, data: bytes) -> list[dict]:
    """Rows of a votes export, with ints, booleans and times as Python values whatever the format."""
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(data.decode("utf-8")))
        assert reader.fieldnames == VOTE_COLUMNS
        raw = list(reader)
    elif fmt == "jsonl":
        raw = [json.loads(line) for line in data.decode("utf-8").splitlines()]
        assert all(list(r) == VOTE_COLUMNS for r in raw)
    else:
        table = pq.read_table(io.BytesIO(data))
        assert table.column_names == VOTE_COLUMNS
        raw = table.to_pylist()
    rows = []
    for r in raw:
        row = dict(r)
        for k in ("vote_id", "output_left_id", "output_right_id", "left_output_id", "winner_output_id", "response_ms"):
            row[k] = _int(row[k])
        for k in ("annotator_excluded", "is_gold", "gold_correct"):
            row[k] = _bool(row[k])
        for k in ("output_right_sha256", "generator_right"):
            row[k] = row[k] or None
        row["served_at"], row["created_at"] = _time(row["served_at"]), _time(row["created_at"])
        rows.append(row)
    return rows


def export_votes_bytes(study, fmt, **kwargs) -> bytes:
    buf = io.BytesIO()
    votes_export(study=study, fmt=fmt, out=buf, **kwargs)
    return buf.getvalue()


def export_preferences_table(study, criterion_slug="aesthetics", **kwargs) -> list[dict]:
    buf = io.BytesIO()
    preferences_export(study=study, criterion=Criterion.objects.get(slug=criterion_slug), out=buf, **kwargs)
    if kwargs.get("fmt") == "jsonl":
        return [json.loads(line) for line in buf.getvalue().decode().splitlines()]
    return pq.read_table(io.BytesIO(buf.getvalue())).to_pylist()


def stored_image(sha256: str) -> bytes:
    """The stored file, found through the README's content-addressed layout."""
    (found,) = (Path(django_settings.MEDIA_ROOT) / "images" / sha256[:2] / sha256[2:4]).glob(f"{sha256}.*")
    return found.read_bytes()


def expected_pairs(voted: Voted, criterion_slug="aesthetics") -> Counter:
    """(caption, left sha, right sha, label_0, label_1, model_0, model_1) of every vote that makes a training pair."""
    pairs = Counter()
    for a in Assignment.objects.filter(study=voted.study, kind="pairwise", criterion__slug=criterion_slug,
                                       answered_at__isnull=False, gold__isnull=True).exclude(annotator=voted.excluded):
        answer = voted.answers[str(a.pk)]
        if answer == "bothbad":
            continue
        pairs[(a.output_left.prompt.text, a.output_left.image_id, a.output_right.image_id, *LABELS[answer],
               a.output_left.generator.name, a.output_right.generator.name)] += 1
    return pairs


def exported_pairs(rows) -> Counter:
    return Counter((r["caption"], r["image_0_uid"], r["image_1_uid"], r["label_0"], r["label_1"], r["model_0"], r["model_1"])
                   for r in rows)


# --------------------------------------------------------------------------- votes export


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_the_votes_export_has_one_row_per_vote_with_the_documented_columns(voted, fmt):
    rows = read_votes(fmt, export_votes_bytes(voted.study, fmt))
    votes = Vote.objects.filter(study=voted.study)
    assert len(rows) == votes.count() == len(voted.answers)
    assert sorted(r["vote_id"] for r in rows) == sorted(votes.values_list("id", flat=True))
    assert {r["kind"] for r in rows} == {"likert", "binary", "pairwise"}
    assert {r["criterion"] for r in rows} == {"aesthetics", "alignment"}
    assert {r["study"] for r in rows} == {voted.study.slug}


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_each_row_shows_what_the_annotator_saw_and_answered(voted, fmt):
    rows = read_votes(fmt, export_votes_bytes(voted.study, fmt))
    pairwise_seen = Counter()
    for row in rows:
        vote = Vote.objects.select_related("assignment", "annotator").get(pk=row["vote_id"])
        a = vote.assignment
        answer = voted.answers[str(a.pk)]
        assert row["answer"] == answer
        assert row["annotator"] == vote.annotator.pseudonym
        assert row["prompt"] == a.output_left.prompt.text
        assert row["output_left_id"] == row["left_output_id"] == a.output_left_id
        assert row["output_left_sha256"] == a.output_left.image_id
        assert row["generator_left"] == a.output_left.generator.name
        assert row["served_at"] == a.served_at and row["created_at"] == vote.created_at
        assert row["served_at"].utcoffset().total_seconds() == 0
        assert row["created_at"] >= row["served_at"]
        assert row["response_ms"] >= 0
        if a.kind == "pairwise":
            assert row["output_right_id"] == a.output_right_id
            assert row["output_right_sha256"] == a.output_right.image_id
            assert row["generator_right"] == a.output_right.generator.name
            shown = {"left": a.output_left_id, "right": a.output_right_id}
            assert row["winner_output_id"] == shown.get(answer)
            pairwise_seen[answer] += 1
        else:
            assert row["output_right_id"] is None and row["generator_right"] is None
            assert row["winner_output_id"] is None
    assert set(pairwise_seen) == set(PAIRWISE_ANSWERS)


def test_gold_votes_are_marked_with_their_outcome(voted):
    rows = {r["vote_id"]: r for r in votes_export_rows(study=voted.study)}
    gold = rows[voted.gold_vote.pk]
    assert gold["is_gold"] is True
    # the gold task says its `output` is better; the annotator chose the left image
    expected = voted.gold_vote.assignment.output_left_id == voted.gold_vote.assignment.gold.output_id
    assert gold["gold_correct"] is expected
    assert all(r["is_gold"] is False and r["gold_correct"] is None for k, r in rows.items() if k != voted.gold_vote.pk)


def test_the_export_can_be_cut_to_one_criterion(voted):
    rows = read_votes("csv", export_votes_bytes(voted.study, "csv", criterion=Criterion.objects.get(slug="alignment")))
    assert rows and {r["criterion"] for r in rows} == {"alignment"}
    assert len(rows) == Vote.objects.filter(study=voted.study, criterion__slug="alignment").count()


def test_excluded_annotators_votes_are_flagged_and_can_be_left_out(voted):
    rows = read_votes("parquet", export_votes_bytes(voted.study, "parquet"))
    theirs = [r for r in rows if r["annotator"] == voted.excluded.pseudonym]
    assert theirs and all(r["annotator_excluded"] is True for r in theirs)
    assert all(r["annotator_excluded"] is False for r in rows if r["annotator"] != voted.excluded.pseudonym)
    kept = list(votes_export_rows(study=voted.study, include_excluded=False))
    assert len(kept) == len(rows) - len(theirs)
    assert voted.excluded.pseudonym not in {r["annotator"] for r in kept}


def test_no_username_email_or_prolific_id_appears_in_any_export(voted):
    texts = [export_votes_bytes(voted.study, "csv").decode(), export_votes_bytes(voted.study, "jsonl").decode()]
    texts.append(json.dumps(read_votes("parquet", export_votes_bytes(voted.study, "parquet")), default=str))
    prefs = export_preferences_table(voted.study, images="paths", fmt="jsonl")
    texts.append(json.dumps(prefs))
    prefs = export_preferences_table(voted.study, images="bytes", fmt="parquet")
    texts.append(json.dumps([{k: v for k, v in r.items() if not isinstance(v, bytes)} for r in prefs]))
    for text in texts:
        lowered = text.lower()
        for secret in voted.private:
            assert secret.lower() not in lowered
    assert all(a.pseudonym in texts[0] for a in Annotator.objects.filter(votes__study=voted.study).distinct())


def test_the_parquet_votes_file_has_typed_columns(voted):
    schema = pq.read_schema(io.BytesIO(export_votes_bytes(voted.study, "parquet")))
    for name in ("vote_id", "output_left_id", "output_right_id", "left_output_id", "winner_output_id", "response_ms"):
        assert pa.types.is_integer(schema.field(name).type), name
    for name in ("annotator_excluded", "is_gold", "gold_correct"):
        assert pa.types.is_boolean(schema.field(name).type), name
    for name in ("served_at", "created_at"):
        assert pa.types.is_timestamp(schema.field(name).type) and schema.field(name).type.tz == "UTC"
    for name in ("study", "annotator", "answer", "output_left_sha256", "generator_left"):
        assert pa.types.is_string(schema.field(name).type), name


def test_an_empty_study_exports_a_header_only(make_study):
    study = make_study()
    assert export_votes_bytes(study, "csv").decode().splitlines() == [",".join(VOTE_COLUMNS)]
    assert export_votes_bytes(study, "jsonl") == b""
    assert pq.read_table(io.BytesIO(export_votes_bytes(study, "parquet"))).num_rows == 0


def test_the_votes_export_does_not_query_once_per_vote(voted, django_assert_max_num_queries):
    assert Vote.objects.filter(study=voted.study).count() > 100
    with django_assert_max_num_queries(2):
        rows = list(votes_export_rows(study=voted.study))
    assert len(rows) == len(voted.answers)


# --------------------------------------------------------------------------- preference pairs


def test_preference_pairs_are_the_pairwise_votes_with_the_left_image_first(voted):
    rows = export_preferences_table(voted.study, images="bytes", fmt="parquet")
    assert TRAINING_COLUMNS <= set(rows[0]) <= PICKAPIC_V2_COLUMNS
    assert exported_pairs(rows) == expected_pairs(voted)
    assert all(r["has_label"] is True and r["are_different"] is True for r in rows)
    per_caption = Counter(r["caption"] for r in rows)
    assert all(r["num_example_per_prompt"] == per_caption[r["caption"]] for r in rows)


def test_ties_are_half_and_half_and_both_bad_votes_are_left_out(voted):
    rows = export_preferences_table(voted.study, images="paths", fmt="jsonl")
    labels = Counter((r["label_0"], r["label_1"]) for r in rows)
    assert labels[(0.5, 0.5)] > 0 and labels[(1.0, 0.0)] > 0 and labels[(0.0, 1.0)] > 0
    assert set(labels) == {(0.5, 0.5), (1.0, 0.0), (0.0, 1.0)}
    counted = Vote.objects.filter(study=voted.study, criterion__slug="aesthetics", kind="pairwise", is_gold=False,
                                  annotator__excluded=False)
    assert len(rows) == counted.exclude(choice="bothbad").count() < counted.count()


def test_excluded_annotators_and_gold_votes_make_no_preference_pairs(voted):
    rows = export_preferences_table(voted.study, images="paths", fmt="parquet")
    excluded_votes = Vote.objects.filter(annotator=voted.excluded, kind="pairwise", criterion__slug="aesthetics")
    assert excluded_votes.exclude(choice="bothbad").exists()
    total = Vote.objects.filter(study=voted.study, criterion__slug="aesthetics", kind="pairwise").exclude(choice="bothbad")
    assert len(rows) == total.count() - excluded_votes.exclude(choice="bothbad").count() - 1  # minus the gold vote
    assert exported_pairs(rows) == expected_pairs(voted)


def test_preference_image_bytes_decode_and_equal_the_stored_files(voted):
    rows = export_preferences_table(voted.study, images="bytes", fmt="parquet")
    assert rows
    for row in rows:
        for k in ("0", "1"):
            data = row[f"jpg_{k}"]
            assert isinstance(data, bytes)
            # how Diffusion-DPO's and PickScore's training code open them
            image = PILImage.open(io.BytesIO(data)).convert("RGB")
            assert image.size == (16, 16)
            assert data == stored_image(row[f"image_{k}_uid"])
            assert hashlib.sha256(data).hexdigest() == row[f"image_{k}_uid"]


def test_preference_columns_have_pickapic_types(voted):
    buf = io.BytesIO()
    preferences_export(study=voted.study, criterion=Criterion.objects.get(slug="aesthetics"), out=buf)
    schema = pq.read_schema(io.BytesIO(buf.getvalue()))
    assert pa.types.is_binary(schema.field("jpg_0").type) and pa.types.is_binary(schema.field("jpg_1").type)
    assert schema.field("label_0").type == pa.float64() == schema.field("label_1").type
    assert pa.types.is_string(schema.field("caption").type) and pa.types.is_string(schema.field("model_0").type)
    assert pa.types.is_boolean(schema.field("are_different").type) and pa.types.is_boolean(schema.field("has_label").type)


# --------------------------------------------------------------------------- API

ENDPOINTS = {
    "votes": "/api/studies/{slug}/export/votes/",
    "preferences": "/api/studies/{slug}/export/preferences/?criterion=aesthetics",
}


@pytest.mark.parametrize("endpoint", ["votes", "preferences"])
@pytest.mark.parametrize(
    "persona,expected", [("admin", 200), ("researcher", 200), ("annotator", 403), ("outsider", 403), ("anonymous", 401)]
)
def test_who_may_export(personas, persona, expected, endpoint, small_voted):
    res = api_client_for(personas[persona]).get(ENDPOINTS[endpoint].format(slug=small_voted.slug))
    assert res.status_code == expected
    if expected == 200:
        assert b"".join(res.streaming_content)
    else:
        assert not res.streaming
        assert small_voted.slug.encode() not in res.content


@pytest.mark.parametrize("fmt,content_type", [
    ("csv", "text/csv"), ("jsonl", "application/x-ndjson"), ("parquet", "application/vnd.apache.parquet"),
])
def test_researchers_download_the_votes_in_each_format(researcher, voted, fmt, content_type):
    res = api_client_for(researcher).get(f"/api/studies/{voted.study.slug}/export/votes/?format={fmt}")
    assert res.status_code == 200 and res.streaming
    assert res["Content-Type"].startswith(content_type)
    assert res["Content-Disposition"] == f'attachment; filename="{voted.study.slug}-votes.{fmt}"'
    rows = read_votes(fmt, b"".join(res.streaming_content))
    assert len(rows) == Vote.objects.filter(study=voted.study).count()


def test_the_votes_download_can_be_cut_to_one_criterion_with_a_session_login(researcher, voted):
    res = client_for(researcher).get(f"/api/studies/{voted.study.slug}/export/votes/?format=jsonl&criterion=alignment")
    assert res.status_code == 200
    assert "alignment" in res["Content-Disposition"]
    rows = read_votes("jsonl", b"".join(res.streaming_content))
    assert rows and {r["criterion"] for r in rows} == {"alignment"}


def test_the_preferences_download_carries_image_bytes_in_parquet(researcher, voted):
    res = api_client_for(researcher).get(f"/api/studies/{voted.study.slug}/export/preferences/?criterion=aesthetics")
    assert res.status_code == 200
    assert res["Content-Disposition"] == f'attachment; filename="{voted.study.slug}-aesthetics-preferences.parquet"'
    rows = pq.read_table(io.BytesIO(b"".join(res.streaming_content))).to_pylist()
    assert exported_pairs(rows) == expected_pairs(voted)
    assert all(r["jpg_0"] == stored_image(r["image_0_uid"]) for r in rows)


def test_the_preferences_download_in_jsonl_names_images_under_the_media_url(researcher, voted):
    url = f"/api/studies/{voted.study.slug}/export/preferences/?criterion=alignment&format=jsonl"
    res = api_client_for(researcher).get(url)
    assert res.status_code == 200
    rows = [json.loads(line) for line in b"".join(res.streaming_content).decode().splitlines()]
    assert exported_pairs(rows) == expected_pairs(voted, "alignment")
    # Originals are for researchers and staff: an anonymous client gets nothing.
    assert client_for(None).get(django_settings.MEDIA_URL + rows[0]["jpg_1"]).status_code == 404
    image = client_for(researcher).get(django_settings.MEDIA_URL + rows[0]["jpg_1"])
    assert image.status_code == 200
    assert b"".join(image.streaming_content) == stored_image(rows[0]["image_1_uid"])


@pytest.mark.parametrize("url,status,field_name", [
    ("/api/studies/{slug}/export/votes/?format=xlsx", 400, "format"),
    ("/api/studies/{slug}/export/votes/?criterion=smell", 400, "criterion"),
    ("/api/studies/{slug}/export/preferences/?criterion=aesthetics&format=csv", 400, "format"),
    ("/api/studies/{slug}/export/preferences/", 400, "criterion"),  # two criteria: which one?
    ("/api/studies/no-such-study/export/votes/", 404, None),
    ("/api/studies/no-such-study/export/preferences/?criterion=aesthetics", 404, None),
])
def test_bad_export_requests_are_refused_with_a_reason(researcher, small_voted, url, status, field_name):
    res = api_client_for(researcher).get(url.format(slug=small_voted.slug))
    assert res.status_code == status
    if field_name:
        assert field_name in res.json()


# --------------------------------------------------------------------------- command line


def test_export_votes_writes_csv_to_standard_output(voted):
    out = io.StringIO()
    call_command("export_votes", "--study", voted.study.slug, "--format", "csv", stdout=out)
    rows = read_votes("csv", out.getvalue().encode())
    assert len(rows) == Vote.objects.filter(study=voted.study).count()


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_export_votes_writes_a_file(voted, tmp_path, fmt):
    folder = tmp_path / "exports"
    folder.mkdir()
    target = folder / f"votes.{fmt}"
    call_command("export_votes", "--study", voted.study.slug, "--criterion", "aesthetics", "--format", fmt,
                 "--output", str(target), stderr=io.StringIO())
    rows = read_votes(fmt, target.read_bytes())
    assert len(rows) == Vote.objects.filter(study=voted.study, criterion__slug="aesthetics").count()
    assert [p.name for p in folder.iterdir()] == [target.name]


@pytest.mark.parametrize("args,message", [
    (["--study", "no-such-study"], "no study with slug 'no-such-study'"),
    (["--study", "{slug}", "--criterion", "smell"], "has no criterion 'smell'"),
    (["--study", "{slug}", "--format", "xlsx"], "invalid choice: 'xlsx'"),
    (["--study", "{slug}", "--format", "parquet"], "needs --output"),
    (["--study", "{slug}", "--output", "/no/such/folder/votes.csv"], "no such folder"),
])
def test_export_votes_explains_what_is_wrong(make_study, args, message):
    study = make_study()
    with pytest.raises(CommandError, match=message):
        call_command("export_votes", *[a.format(slug=study.slug) for a in args], stdout=io.StringIO())


def test_export_preferences_writes_a_parquet_file_with_image_bytes(voted, tmp_path):
    target = tmp_path / "prefs.parquet"
    err = io.StringIO()
    call_command("export_preferences", "--study", voted.study.slug, "--criterion", "aesthetics",
                 "--output", str(target), stderr=err)
    rows = pq.read_table(target).to_pylist()
    assert exported_pairs(rows) == expected_pairs(voted)
    assert all(r["jpg_1"] == stored_image(r["image_1_uid"]) for r in rows)
    assert f"wrote {len(rows)} preference pairs" in err.getvalue()


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_export_preferences_with_paths_copies_the_images_beside_the_file(voted, tmp_path, fmt):
    folder = tmp_path / "dataset"
    folder.mkdir()
    target = folder / f"train.{fmt}"
    call_command("export_preferences", "--study", voted.study.slug, "--criterion", "alignment", "--images", "paths",
                 "--format", fmt, "--output", str(target), stderr=io.StringIO())
    if fmt == "jsonl":
        rows = [json.loads(line) for line in target.read_text().splitlines()]
    else:
        rows = pq.read_table(target).to_pylist()
    assert exported_pairs(rows) == expected_pairs(voted, "alignment")
    for row in rows:
        for k in ("0", "1"):
            relative = Path(row[f"jpg_{k}"])
            assert not relative.is_absolute()
            assert (folder / relative).read_bytes() == stored_image(row[f"image_{k}_uid"])


def test_a_criterion_taken_off_the_study_still_exports_its_votes(small_voted):
    small_voted.criteria.remove(Criterion.objects.get(slug="alignment"))
    out = io.StringIO()
    call_command("export_votes", "--study", small_voted.slug, "--criterion", "alignment", "--format", "jsonl", stdout=out)
    rows = read_votes("jsonl", out.getvalue().encode())
    assert rows and len(rows) == Vote.objects.filter(study=small_voted, criterion__slug="alignment").count()


def test_a_study_with_one_criterion_needs_no_criterion_for_preferences(make_study, annotator_user, tmp_path):
    study = make_study(generators=GENERATOR_NAMES[:3], prompts=1, kinds=("pairwise",))
    answers = {}
    cast_all(study, annotator_for_user(annotator_user), answers, Counter())
    target = tmp_path / "prefs.parquet"
    call_command("export_preferences", "--study", study.slug, "--output", str(target), stderr=io.StringIO())
    labels = [(r["label_0"], r["label_1"]) for r in pq.read_table(target).to_pylist()]
    assert len(labels) == sum(1 for a in answers.values() if a != "bothbad")
    assert sorted(labels) == sorted(LABELS[a] for a in answers.values() if a != "bothbad")


@pytest.mark.parametrize("args,message", [
    (["--study", "no-such-study", "--criterion", "aesthetics"], "no study with slug 'no-such-study'"),
    (["--study", "{slug}", "--criterion", "smell"], "has no criterion 'smell'"),
    (["--study", "{slug}"], "several criteria"),
    (["--study", "{slug}", "--criterion", "aesthetics", "--format", "csv"], "invalid choice: 'csv'"),
    (["--study", "{slug}", "--criterion", "aesthetics", "--images", "urls"], "invalid choice: 'urls'"),
    (["--study", "{slug}", "--criterion", "aesthetics", "--format", "jsonl", "--images", "bytes"],
     "JSONL cannot hold image bytes"),
])
def test_export_preferences_explains_what_is_wrong(make_study, tmp_path, args, message):
    study = make_study()
    study.criteria.add(Criterion.objects.get(slug="alignment"))
    folder = tmp_path / "exports"
    folder.mkdir()
    target = folder / "prefs.out"
    target.write_bytes(b"an older export")
    with pytest.raises(CommandError, match=message):
        call_command("export_preferences", *[a.format(slug=study.slug) for a in args], "--output", str(target),
                     stderr=io.StringIO())
    assert target.read_bytes() == b"an older export"
    assert [p.name for p in folder.iterdir()] == ["prefs.out"]


FORMULAS = ["=cmd|' /C calc'!A0", "@SUM(1+1)*cmd|' /C calc'!A0", "+1+2", "-2+3 a cat"]


def test_text_starting_with_tab_or_carriage_return_is_neutralised_too():
    from ratings.exports import spreadsheet_safe

    assert spreadsheet_safe("\t=1+1") == "'\t=1+1" and spreadsheet_safe("\r=1") == "'\r=1"
    assert spreadsheet_safe("a cat") == "a cat" and spreadsheet_safe(-0.5) == -0.5 and spreadsheet_safe(None) is None


def test_csv_and_jsonl_exports_neutralise_spreadsheet_formulas(tmp_path, make_study):
    from arena.imports import outputs_import
    from tests.conftest import make_zip, manifest_jsonl, png_bytes

    study = make_study(kinds=("likert",), prompts=1, quota_per_annotator=100)
    files, rows = {}, []
    for i, text in enumerate(FORMULAS):
        files[f"f{i}.png"] = png_bytes(color=(i, 50, 60))
        rows.append({"generator": GENERATOR_NAMES[0], "prompt": text, "image": f"f{i}.png"})
    files["manifest.jsonl"] = manifest_jsonl(rows)
    outputs_import(path=make_zip(tmp_path / "f.zip", files), study=study)
    from arena.voting import study_index_clear

    study_index_clear()
    annotator = Annotator.objects.create()
    cast_all(study, annotator, {}, Counter())
    csv_rows = read_votes("csv", export_votes_bytes(study, "csv"))
    jsonl_rows = read_votes("jsonl", export_votes_bytes(study, "jsonl"))
    for exported in (csv_rows, jsonl_rows):
        prompts = {r["prompt"] for r in exported}
        for text in FORMULAS:
            assert "'" + text in prompts and text not in prompts
        assert all(not str(r["prompt"]).startswith(("=", "+", "-", "@", "\t", "\r")) for r in exported)
    # Parquet keeps the text as it is: it is read by programs, not spreadsheets.
    parquet_prompts = {r["prompt"] for r in read_votes("parquet", export_votes_bytes(study, "parquet"))}
    assert set(FORMULAS) <= parquet_prompts
