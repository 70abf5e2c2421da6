"""Vote exports for analysis (CSV, JSONL, Parquet) and preference pairs for training.

Votes name annotators by pseudonym only: never a username, an e-mail address or a
Prolific id. Rows are streamed from the database in chunks, with the joins done in SQL.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq
from django.db.models import Count

from arena.models import Criterion, QuestionAnswer, Study, Vote, VoteKind, image_relative_path
from arena.selectors import counted_votes
from arena.storage import image_path

CHUNK_SIZE = 2000
PARQUET_BATCH_ROWS = 10_000
PREFERENCE_BATCH_ROWS = 256  # rows per Parquet row group when images travel as bytes

VOTE_FORMATS = ("csv", "jsonl", "parquet")
PREFERENCE_FORMATS = ("parquet", "jsonl")
IMAGE_MODES = ("bytes", "paths")

CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
}

_TIMESTAMP = pa.timestamp("us", tz="UTC")

VOTE_SCHEMA = pa.schema([
    pa.field("vote_id", pa.int64(), nullable=False),
    pa.field("study", pa.string(), nullable=False),
    pa.field("criterion", pa.string(), nullable=False),
    pa.field("kind", pa.string(), nullable=False),
    pa.field("annotator", pa.string(), nullable=False),
    pa.field("annotator_excluded", pa.bool_(), nullable=False),
    pa.field("prompt", pa.string(), nullable=False),
    pa.field("prompt_category", pa.string(), nullable=False),
    pa.field("output_left_id", pa.int64(), nullable=False),
    pa.field("output_left_sha256", pa.string(), nullable=False),
    pa.field("generator_left", pa.string(), nullable=False),
    pa.field("output_right_id", pa.int64()),
    pa.field("output_right_sha256", pa.string()),
    pa.field("generator_right", pa.string()),
    pa.field("answer", pa.string(), nullable=False),
    pa.field("left_output_id", pa.int64(), nullable=False),
    pa.field("winner_output_id", pa.int64()),
    pa.field("response_ms", pa.int64(), nullable=False),
    pa.field("is_gold", pa.bool_(), nullable=False),
    pa.field("gold_correct", pa.bool_()),
    pa.field("served_at", _TIMESTAMP, nullable=False),
    pa.field("created_at", _TIMESTAMP, nullable=False),
    pa.field("elo_batch", pa.int64()),
])
VOTE_COLUMNS = tuple(VOTE_SCHEMA.names)


def preference_schema(images: str) -> pa.Schema:
    """Pick-a-Pic v2's columns and types; jpg_0/jpg_1 are binary, or strings when they hold paths."""
    image_type = pa.binary() if images == "bytes" else pa.string()
    return pa.schema([
        pa.field("caption", pa.string(), nullable=False),
        pa.field("jpg_0", image_type, nullable=False),
        pa.field("jpg_1", image_type, nullable=False),
        pa.field("label_0", pa.float64(), nullable=False),
        pa.field("label_1", pa.float64(), nullable=False),
        pa.field("model_0", pa.string(), nullable=False),
        pa.field("model_1", pa.string(), nullable=False),
        pa.field("image_0_uid", pa.string(), nullable=False),
        pa.field("image_1_uid", pa.string(), nullable=False),
        pa.field("are_different", pa.bool_(), nullable=False),
        pa.field("has_label", pa.bool_(), nullable=False),
        pa.field("num_example_per_prompt", pa.int64(), nullable=False),
    ])


PREFERENCE_COLUMNS = tuple(preference_schema("bytes").names)


class ExportError(ValueError):
    """A request for an export that cannot be made (unknown study, criterion, format...)."""


# --------------------------------------------------------------------------- selectors


def export_study_get(*, slug: str) -> Study:
    try:
        return Study.objects.get(slug=slug)
    except Study.DoesNotExist:
        raise ExportError(f"no study with slug {slug!r}") from None


def export_criterion_get(*, study: Study, slug: str | None, required: bool = False) -> Criterion | None:
    """The study's criterion named by `slug`. Without a slug: None, or the study's only criterion when `required`."""
    criteria = {c.slug: c for c in study.criteria.all()}
    if not slug:
        if not required:
            return None
        if len(criteria) == 1:
            return next(iter(criteria.values()))
        if not criteria:
            raise ExportError(f"study {study.slug!r} has no criteria")
        raise ExportError(f"study {study.slug!r} has several criteria; name one of: {', '.join(sorted(criteria))}")
    if slug in criteria:
        return criteria[slug]
    voted = Criterion.objects.filter(slug=slug, vote__study=study).first()
    if voted is not None:
        return voted
    known = ", ".join(sorted(criteria)) or "none"
    raise ExportError(f"study {study.slug!r} has no criterion {slug!r}; its criteria: {known}")


def _utc(value: datetime) -> datetime:
    return value.astimezone(timezone.utc)


def _answer(kind: str, score: int | None, choice: str, questions: list | None = None) -> str:
    if kind == VoteKind.QUESTIONS:
        return json.dumps(questions or [], ensure_ascii=False)
    if kind == VoteKind.PAIRWISE:
        return choice
    if kind == VoteKind.BINARY:
        return "good" if score == 1 else "bad"
    return str(score)


def votes_export_rows(*, study: Study, criterion: Criterion | None = None, include_excluded: bool = True) -> Iterator[dict]:
    """One row per vote (columns: VOTE_COLUMNS), oldest first.

    `answer` is 1-5 (likert), good|bad (binary) or left|right|tie|bothbad (pairwise), as a
    string; for a question check, a JSON list of {"question", "answer": "yes"|"no"} in question order. `winner_output_id` is set for decisive pairwise votes only. `served_at` and
    `created_at` are timezone-aware UTC datetimes (ISO 8601 in CSV and JSONL). `elo_batch` is the
    online Elo batch that applied the vote (empty until applied): the Elo order is (elo_batch, vote_id).
    """
    qs = Vote.objects.filter(study=study)
    if criterion is not None:
        qs = qs.filter(criterion=criterion)
    if not include_excluded:
        qs = qs.filter(annotator__excluded=False)
    values = qs.order_by("id").values_list(
        "id", "study__slug", "criterion__slug", "kind", "annotator__pseudonym", "annotator__excluded",
        "output_left__prompt__text", "output_left__prompt__category",
        "output_left_id", "output_left__image", "generator_left__name",
        "output_right_id", "output_right__image", "generator_right__name",
        "score", "choice", "response_ms", "is_gold", "gold_correct", "assignment__served_at", "created_at", "elo_batch",
    )
    for chunk in _batched(values.iterator(chunk_size=CHUNK_SIZE), CHUNK_SIZE):
        yield from _vote_rows(chunk)


def _vote_rows(chunk: list[tuple]) -> Iterator[dict]:
    asked = [row[0] for row in chunk if row[3] == VoteKind.QUESTIONS]
    answers: dict[int, list[dict]] = {}
    for vote_id, question, answer in (
        QuestionAnswer.objects.filter(vote_id__in=asked).order_by("vote_id", "question_index")
        .values_list("vote_id", "question", "answer") if asked else ()
    ):
        answers.setdefault(vote_id, []).append({"question": question, "answer": "yes" if answer else "no"})
    for (vote_id, study_slug, criterion_slug, kind, pseudonym, excluded, prompt, category, left_id, left_sha,
         left_gen, right_id, right_sha, right_gen, score, choice, response_ms, is_gold, gold_correct,
         served_at, created_at, elo_batch) in chunk:
        yield {
            "vote_id": vote_id,
            "study": study_slug,
            "criterion": criterion_slug,
            "kind": kind,
            "annotator": pseudonym,
            "annotator_excluded": excluded,
            "prompt": prompt,
            "prompt_category": category,
            "output_left_id": left_id,
            "output_left_sha256": left_sha,
            "generator_left": left_gen,
            "output_right_id": right_id,
            "output_right_sha256": right_sha,
            "generator_right": right_gen,
            "answer": _answer(kind, score, choice, answers.get(vote_id)),
            "left_output_id": left_id,
            "winner_output_id": {"left": left_id, "right": right_id}.get(choice),
            "response_ms": response_ms,
            "is_gold": is_gold,
            "gold_correct": gold_correct,
            "served_at": _utc(served_at),
            "created_at": _utc(created_at),
            "elo_batch": elo_batch,
        }


# --------------------------------------------------------------------------- writers


class _Drain:
    """A write-only file that hands back what was written since the last drain (for streaming Parquet)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._pos = 0
        self.closed = False

    def write(self, data) -> int:
        data = bytes(data)
        self._parts.append(data)
        self._pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self._pos

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def drain(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def _batched(rows: Iterable[dict], size: int) -> Iterator[list[dict]]:
    batch: list[dict] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _parquet_chunks(rows: Iterable[dict], schema: pa.Schema, batch_rows: int) -> Iterator[bytes]:
    sink = _Drain()
    writer = pq.ParquetWriter(sink, schema)
    try:
        for batch in _batched(rows, batch_rows):
            writer.write_batch(pa.RecordBatch.from_pylist(batch, schema=schema))
            yield sink.drain()
    finally:
        writer.close()
    yield sink.drain()


def _text_value(value):
    return value.isoformat() if isinstance(value, datetime) else value


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value):
    """A text cell that a spreadsheet would run as a formula gets a leading ' (OWASP's CSV injection advice).

    Numbers stay numbers; only text starting with = + - @ tab or carriage return changes.
    """
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _jsonl_chunks(rows: Iterable[dict]) -> Iterator[bytes]:
    for row in rows:
        yield (json.dumps({k: spreadsheet_safe(_text_value(v)) for k, v in row.items()}, ensure_ascii=False) + "\n").encode()


def _csv_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return spreadsheet_safe(str(_text_value(value)))


def _csv_chunks(rows: Iterable[dict], columns: tuple[str, ...]) -> Iterator[bytes]:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for batch in _batched(rows, 500):
        for row in batch:
            writer.writerow([_csv_cell(row[c]) for c in columns])
        yield buf.getvalue().encode()
        buf.seek(0)
        buf.truncate()
    if buf.tell():
        yield buf.getvalue().encode()


def votes_export_chunks(*, study: Study, criterion: Criterion | None = None, fmt: str,
                        include_excluded: bool = True) -> Iterator[bytes]:
    """The export file as a stream of byte chunks, for writing to a file or a streaming response.

    CSV: a header line, then one line per vote; booleans `true`/`false`, missing values empty.
    JSONL: one object per vote. Parquet: VOTE_SCHEMA, one row group per batch of votes.
    """
    if fmt not in VOTE_FORMATS:
        raise ExportError(f"unknown format {fmt!r}; use one of: {', '.join(VOTE_FORMATS)}")
    rows = votes_export_rows(study=study, criterion=criterion, include_excluded=include_excluded)
    if fmt == "csv":
        return _csv_chunks(rows, VOTE_COLUMNS)
    if fmt == "jsonl":
        return _jsonl_chunks(rows)
    return _parquet_chunks(rows, VOTE_SCHEMA, PARQUET_BATCH_ROWS)


def votes_export(*, study: Study, criterion: Criterion | None = None, fmt: str, out: BinaryIO,
                 include_excluded: bool = True) -> None:
    """Write every vote of the study (of one criterion, if given) to the binary file `out`."""
    for chunk in votes_export_chunks(study=study, criterion=criterion, fmt=fmt, include_excluded=include_excluded):
        out.write(chunk)


# --------------------------------------------------------------------------- preference pairs

_PREFERENCE_LABELS = {"left": (1.0, 0.0), "right": (0.0, 1.0), "tie": (0.5, 0.5)}


def _preference_votes(*, study: Study, criterion: Criterion):
    # Training pairs leave out what every number leaves out: excluded annotators, withdrawn outputs.
    return counted_votes(Vote.objects.filter(
        study=study,
        criterion=criterion,
        kind=VoteKind.PAIRWISE,
        choice__in=list(_PREFERENCE_LABELS),
        is_gold=False,
        annotator__excluded=False,
    ), study=study)


def preferences_count(*, study: Study, criterion: Criterion) -> int:
    return _preference_votes(study=study, criterion=criterion).count()


def preferences_rows(*, study: Study, criterion: Criterion, images: str = "bytes",
                     image_dir: Path | None = None) -> Iterator[dict]:
    """Preference pairs in Pick-a-Pic's columns (PREFERENCE_COLUMNS), one per pairwise vote.

    jpg_0 is the image shown on the left and jpg_1 the one on the right, as the annotator
    saw them (not canonicalized). Labels: 1/0 or 0/1 for a decisive vote, 0.5/0.5 for a tie.
    Left out: "both bad" votes (no preference between the two), gold votes and votes of
    excluded annotators. `has_label` is always true (every row is a recorded choice);
    `num_example_per_prompt` counts the rows sharing the caption.

    images="bytes": jpg_0/jpg_1 hold the image file's bytes (what `Image.open(io.BytesIO(...))`
    reads). images="paths": they hold the content-addressed path `images/ab/cd/<sha256>.<ext>`,
    relative to MEDIA_ROOT (and MEDIA_URL); with `image_dir`, the images are also copied there
    under the same relative paths, so the paths resolve against `image_dir`.
    """
    if images not in IMAGE_MODES:
        raise ExportError(f"unknown image mode {images!r}; use one of: {', '.join(IMAGE_MODES)}")
    votes = _preference_votes(study=study, criterion=criterion)
    per_prompt = {
        r["output_left__prompt"]: r["n"]
        for r in votes.order_by().values("output_left__prompt").annotate(n=Count("id"))
    }
    copied: set[str] = set()
    values = votes.order_by("id").values_list(
        "output_left__prompt_id", "output_left__prompt__text", "choice",
        "output_left__image", "output_left__image__format", "generator_left__name",
        "output_right__image", "output_right__image__format", "generator_right__name",
    )
    for prompt_id, caption, choice, sha_0, ext_0, model_0, sha_1, ext_1, model_1 in values.iterator(chunk_size=CHUNK_SIZE):
        label_0, label_1 = _PREFERENCE_LABELS[choice]
        yield {
            "caption": caption,
            "jpg_0": _image_value(sha_0, ext_0, images, image_dir, copied),
            "jpg_1": _image_value(sha_1, ext_1, images, image_dir, copied),
            "label_0": label_0,
            "label_1": label_1,
            "model_0": model_0,
            "model_1": model_1,
            "image_0_uid": sha_0,
            "image_1_uid": sha_1,
            "are_different": sha_0 != sha_1,
            "has_label": True,
            "num_example_per_prompt": per_prompt[prompt_id],
        }


def _image_value(sha256: str, ext: str, images: str, image_dir: Path | None, copied: set[str]):
    if images == "bytes":
        return image_path(sha256, ext).read_bytes()
    relative = image_relative_path(sha256, ext)
    if image_dir is not None and relative not in copied:
        target = Path(image_dir) / relative
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(image_path(sha256, ext), target)
        copied.add(relative)
    return relative


def preferences_export_chunks(*, study: Study, criterion: Criterion, images: str = "bytes", fmt: str = "parquet",
                              image_dir: Path | None = None) -> Iterator[bytes]:
    """Preference pairs (see `preferences_rows`) as a stream of Parquet or JSONL byte chunks.

    JSON has no bytes type, so JSONL needs images="paths".
    """
    if fmt not in PREFERENCE_FORMATS:
        raise ExportError(f"unknown format {fmt!r}; use one of: {', '.join(PREFERENCE_FORMATS)}")
    if images not in IMAGE_MODES:
        raise ExportError(f"unknown image mode {images!r}; use one of: {', '.join(IMAGE_MODES)}")
    if fmt == "jsonl" and images == "bytes":
        raise ExportError("JSONL cannot hold image bytes; use images=paths with jsonl, or the parquet format")
    rows = preferences_rows(study=study, criterion=criterion, images=images, image_dir=image_dir)
    if fmt == "jsonl":
        return _jsonl_chunks(rows)
    batch = PREFERENCE_BATCH_ROWS if images == "bytes" else PARQUET_BATCH_ROWS
    return _parquet_chunks(rows, preference_schema(images), batch)


def preferences_export(*, study: Study, criterion: Criterion, out: BinaryIO, images: str = "bytes",
                       fmt: str = "parquet", image_dir: Path | None = None) -> None:
    """Write the study's preference pairs for one criterion to the binary file `out`.

    The Parquet file loads with `datasets.load_dataset("parquet", data_files=...)` and reads
    like Pick-a-Pic v2 in PickScore and Diffusion-DPO training code.
    """
    chunks = preferences_export_chunks(study=study, criterion=criterion, images=images, fmt=fmt, image_dir=image_dir)
    for chunk in chunks:
        out.write(chunk)
