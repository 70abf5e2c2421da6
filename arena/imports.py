"""The one import service behind the upload page, the REST API and `manage.py import_outputs`.

An import is all or nothing: every row is checked and every image decoded in full
before anything is written; then files are stored content-addressed and rows are
created in one transaction. A failed import leaves no row and no file behind.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction

from .archives import ArchiveRejected, CheckedImage, FileSource, FolderSource, image_check, member_name_unsafe, source_open
from .models import Generator, Image, Output, Prompt, Rendition, Study, Upload, prompt_text_sha256
from .quoting import quoted
from .renditions import rendition_bytes
from .storage import files_orphaned_remove, image_store, rendition_store, sha256_hex

logger = logging.getLogger(__name__)

MANIFEST_NAMES = ("manifest.jsonl", "manifest.csv")
REQUIRED_COLUMNS = ("generator", "prompt", "image")
OPTIONAL_COLUMNS = ("seed", "category", "questions", "metadata", "text")
ALLOWED_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
MAX_REPORTED_ERRORS = 200
BATCH = 1000
DEFAULT_DISPLAY_BOX = (1024, False)  # Study.display_long_side / display_square defaults


@dataclass(frozen=True)
class RowError:
    line: int | None
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message

    def as_dict(self) -> dict:
        return {"line": self.line, "message": self.message}


class ImportRejected(Exception):
    """The input was refused; nothing was stored. `errors` says what and where."""

    def __init__(self, errors: list[RowError], rows_total: int = 0):
        self.errors = errors
        self.rows_total = rows_total
        super().__init__("\n".join(str(e) for e in errors[:20]))


@dataclass
class ImportReport:
    rows_total: int = 0
    rows_imported: int = 0
    rows_existing: int = 0
    generators_created: list[str] = field(default_factory=list)
    prompts_created: int = 0
    images_stored: int = 0
    output_ids: list[int] = field(default_factory=list)


@dataclass(slots=True)
class _Row:
    line: int
    generator: str
    prompt: str
    image: str
    seed: int | None
    category: str
    questions: list[str]
    metadata: dict
    target_text: str = ""


# --------------------------------------------------------------------------- sources


def _open_source(path: Path) -> FileSource:
    """The upload's reader, pointed at the folder that holds its manifest."""
    source = source_open(path)
    if isinstance(source, FolderSource):
        links = [m for m in MANIFEST_NAMES if (source.root / m).is_symlink()]
        if links:
            raise ArchiveRejected([f"{links[0]} in {path} is a symbolic link; copy the file itself into the folder"])
        names = [m for m in MANIFEST_NAMES if (source.root / m).is_file()]
        if not names:
            raise ArchiveRejected([f"no manifest.jsonl or manifest.csv in {path}"])
        source.manifest_name = names[0]
        return source
    # The manifest lies at the top, or in the archive's single top-level folder.
    files = source.files
    for candidate in ("",) + tuple(sorted({n.split("/", 1)[0] + "/" for n in files if "/" in n})):
        found = [m for m in MANIFEST_NAMES if candidate + m in files]
        if found:
            source.prefix = candidate
            source.manifest_name = found[0]
            return source
    source.close()
    raise ArchiveRejected(["no manifest.jsonl or manifest.csv at the top of the archive"])


# --------------------------------------------------------------------------- manifest


class _ManifestLines:
    """The manifest's lines, decoded one at a time (never the whole file in memory)."""

    def __init__(self, name: str, fh):
        self.name, self.fh = name, fh
        self.offset = 0
        self.lineno = 0
        self.any_text = False

    def __iter__(self) -> Iterator[str]:
        for raw in self.fh:
            self.lineno += 1
            if self.lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw, self.offset = raw[3:], 3
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                at = self.offset + exc.start
                raise ImportRejected(
                    [RowError(self.lineno, f"{self.name} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {at}); save it as UTF-8")]
                ) from None
            self.offset += len(raw)
            if line.strip():
                self.any_text = True
            yield line


def _manifest_records(name: str, lines: _ManifestLines) -> Iterator[tuple[int, dict | RowError]]:
    if name.endswith(".jsonl"):
        for line in lines:
            lineno = lines.lineno
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                yield lineno, RowError(lineno, f"not valid JSON ({exc.msg} at column {exc.colno})")
                continue
            if not isinstance(obj, dict):
                yield lineno, RowError(lineno, "each line must be a JSON object with generator, prompt and image")
                continue
            yield lineno, obj
        return
    reader = csv.reader(lines)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        yield 1, RowError(1, f"cannot read the CSV header ({exc})")
        return
    header = [h.strip() for h in header]
    yield 1, {"__header__": header}
    try:
        for values in reader:
            lineno = reader.line_num
            if not any(v.strip() for v in values):
                continue
            if len(values) != len(header):
                yield lineno, RowError(lineno, f"has {len(values)} fields, the header has {len(header)}")
                continue
            yield lineno, dict(zip(header, values))
    except csv.Error as exc:
        yield reader.line_num, RowError(reader.line_num, f"is not valid CSV ({exc})")


def _check_columns(keys: set[str], where: int | None) -> list[RowError]:
    errors = []
    unknown = sorted(keys - set(ALLOWED_COLUMNS))
    if unknown:
        shown = ", ".join(k if len(k) <= 40 else k[:40] + "…" for k in unknown[:10]) + (" …" if len(unknown) > 10 else "")
        errors.append(
            RowError(where, f"unknown column(s) {shown}; allowed: {', '.join(ALLOWED_COLUMNS)}")
        )
    missing = [c for c in REQUIRED_COLUMNS if c not in keys]
    if missing:
        errors.append(RowError(where, f"missing column(s) {', '.join(missing)}"))
    return errors


def _parse_row(lineno: int, rec: dict, is_csv: bool) -> _Row | list[RowError]:
    errors: list[RowError] = []

    def text(key: str, limit: int, required: bool) -> str:
        value = rec.get(key)
        if value is None or value == "":
            if required:
                errors.append(RowError(lineno, f"'{key}' is empty"))
            return ""
        if not isinstance(value, str):
            errors.append(RowError(lineno, f"'{key}' must be a string, got {type(value).__name__}"))
            return ""
        value = value.strip()
        if required and not value:
            errors.append(RowError(lineno, f"'{key}' is empty"))
        if len(value) > limit:
            errors.append(RowError(lineno, f"'{key}' is longer than {limit} characters"))
        return value

    generator = text("generator", 200, True)
    prompt = text("prompt", 10_000, True)
    image = text("image", 500, True)
    category = text("category", 100, False)
    target_text = text("text", 2000, False)
    if image and member_name_unsafe(image):
        errors.append(RowError(lineno, f"image path {quoted(image)} must be relative, without '..'"))

    seed = rec.get("seed")
    if seed in (None, ""):
        seed = None
    elif isinstance(seed, bool):
        errors.append(RowError(lineno, f"'seed' must be an integer, got {quoted(seed)}"))
    elif isinstance(seed, int):
        pass
    else:
        try:
            seed = int(str(seed).strip())
        except ValueError:
            errors.append(RowError(lineno, f"'seed' must be an integer, got {quoted(seed)}"))
            seed = None
    if isinstance(seed, int) and not -(2**63) <= seed < 2**63:
        errors.append(RowError(lineno, "'seed' is out of the 64-bit integer range"))

    questions = rec.get("questions")
    if questions in (None, ""):
        questions = []
    elif is_csv and isinstance(questions, str):
        try:
            questions = json.loads(questions)
        except json.JSONDecodeError:
            errors.append(RowError(lineno, "'questions' must be a JSON list of strings, e.g. [\"Is there a cat?\"]"))
            questions = []
    if not isinstance(questions, list) or not all(isinstance(q, str) and q.strip() for q in questions):
        errors.append(RowError(lineno, "'questions' must be a list of non-empty strings"))
        questions = []
    questions = [q.strip() for q in questions]

    metadata = rec.get("metadata")
    if metadata in (None, ""):
        metadata = {}
    elif is_csv and isinstance(metadata, str):
        try:
            metadata = json.loads(metadata)
        except json.JSONDecodeError:
            errors.append(RowError(lineno, "'metadata' must be a JSON object"))
            metadata = {}
    if not isinstance(metadata, dict):
        errors.append(RowError(lineno, "'metadata' must be a JSON object"))
        metadata = {}
    elif metadata:
        size = len(json.dumps(metadata, ensure_ascii=False).encode())
        cap = settings.ARENA_MAX_METADATA_BYTES
        if size > cap:
            errors.append(RowError(lineno, f"'metadata' is {size:,} bytes as JSON, over the limit of {cap:,} (ARENA_MAX_METADATA_BYTES)"))
            metadata = {}

    if errors:
        return errors
    return _Row(lineno, generator, prompt, image, seed, category, questions, metadata, target_text)


# --------------------------------------------------------------------------- images


# --------------------------------------------------------------------------- service


ProgressFn = Callable[[int, int], None]


def outputs_import(
    *,
    path: Path,
    study: Study | None = None,
    upload: Upload | None = None,
    progress: ProgressFn | None = None,
    before_store: Callable[[list[tuple[str, str]]], None] | None = None,
) -> ImportReport:
    """Check and import a .zip or folder of model outputs.

    Raises ImportRejected (nothing stored) on any bad input. `before_store` is called with the
    (sha256, ext) of every image about to be written, before any is (a journal, so that files of
    a process killed before its commit can be found and removed).
    """
    try:
        with _open_source(Path(path)) as source:
            rows, images = _check_everything(source, study=study, progress=progress)
            if before_store is not None:
                before_store(sorted({(c.sha256, c.ext) for c in images.values()}))
            return _store(source=source, rows=rows, images=images, study=study, upload=upload)
    except ArchiveRejected as exc:
        raise ImportRejected([RowError(None, m) for m in exc.messages]) from None


def _check_everything(
    source: FileSource, *, study: Study | None, progress: ProgressFn | None
) -> tuple[list[_Row], dict[str, CheckedImage]]:
    name = source.manifest_name
    is_csv = name.endswith(".csv")
    max_rows = settings.ARENA_UPLOAD_MAX_ROWS
    errors: list[RowError] = []
    rows: list[_Row] = []
    total = 0
    with source.open(source.manifest_name) as fh:
        lines = _ManifestLines(name, fh)
        for lineno, rec in _manifest_records(name, lines):
            if isinstance(rec, dict) and "__header__" in rec:
                errors += _check_columns(set(rec["__header__"]), 1)
                if errors:
                    raise ImportRejected(errors)
                continue
            total += 1
            if total > max_rows:
                raise ImportRejected(
                    [RowError(lineno, f"the manifest has more than {max_rows:,} rows (ARENA_UPLOAD_MAX_ROWS); split it into several uploads")],
                    rows_total=total,
                )
            if isinstance(rec, RowError):
                errors.append(rec)
                continue
            if not is_csv:
                col_errors = _check_columns(set(rec), lineno)
                if col_errors:
                    errors += col_errors
                    continue
            parsed = _parse_row(lineno, rec, is_csv)
            if isinstance(parsed, list):
                errors += parsed
            else:
                rows.append(parsed)
            if len(errors) >= MAX_REPORTED_ERRORS:
                raise ImportRejected(errors, rows_total=total)
        if not lines.any_text:
            raise ImportRejected([RowError(None, f"{name} is empty: it needs one row per image")])
    if not total:
        raise ImportRejected([RowError(None, f"{name} has a header but no rows")])

    seen_image: dict[tuple, int] = {}
    seen_seed: dict[tuple, tuple[int, str]] = {}
    prompt_attrs: dict[str, tuple[int, str, list[str]]] = {}
    for row in rows:
        key = (row.generator, row.prompt, row.image)
        if key in seen_image:
            errors.append(RowError(row.line, f"duplicate of line {seen_image[key]} (same generator, prompt and image)"))
        seen_image.setdefault(key, row.line)
        if row.seed is not None:
            skey = (row.generator, row.prompt, row.seed)
            if skey in seen_seed and seen_seed[skey][1] != row.image:
                errors.append(RowError(row.line, f"duplicate of line {seen_seed[skey][0]} (same generator, prompt and seed {row.seed})"))
            seen_seed.setdefault(skey, (row.line, row.image))
        if row.prompt in prompt_attrs:
            first_line, cat, qs = prompt_attrs[row.prompt]
            if (row.category and cat and row.category != cat) or (row.questions and qs and row.questions != qs):
                errors.append(RowError(row.line, f"category or questions differ from line {first_line} for the same prompt"))
        else:
            prompt_attrs[row.prompt] = (row.line, row.category, row.questions)
        if not source.exists(row.image):
            errors.append(RowError(row.line, source.missing_reason(row.image)))
    del seen_image, seen_seed

    if study is not None and not study.allow_new_generators:
        allowed = set(study.generators.values_list("name", flat=True))
        for row in rows:
            if row.generator not in allowed:
                errors.append(
                    RowError(row.line, f"generator {quoted(row.generator)} is not in study {study.slug!r}, which does not allow new generators")
                )

    # Existing prompts must agree on category.
    shas = {prompt_text_sha256(p): p for p in prompt_attrs}
    sha_list = list(shas)
    for i in range(0, len(sha_list), BATCH):
        for text, category in Prompt.objects.filter(text_sha256__in=sha_list[i : i + BATCH]).values_list("text", "category"):
            first_line, cat, _qs = prompt_attrs[text]
            if cat and category and cat != category:
                errors.append(RowError(first_line, f"prompt is already stored with category {category!r}, not {cat!r}"))

    if errors:
        raise ImportRejected(errors, rows_total=total)

    # Every image decoded in full; only its hash and size are kept.
    images: dict[str, CheckedImage] = {}
    done = 0
    for row in rows:
        if row.image not in images:
            checked = image_check(row.image, source.read(row.image))
            if isinstance(checked, str):
                errors.append(RowError(row.line, checked))
                if len(errors) >= MAX_REPORTED_ERRORS:
                    break
            else:
                images[row.image] = checked
        done += 1
        if progress and (done % 25 == 0 or done == len(rows)):
            progress(done, total)
    if errors:
        raise ImportRejected(errors, rows_total=total)
    return rows, images


def display_boxes(study: Study | None) -> set[tuple[int, bool]]:
    """The rendition boxes an import makes: the default one, and its study's."""
    boxes = {DEFAULT_DISPLAY_BOX}
    if study is not None:
        boxes.add((study.display_long_side, study.display_square))
    return boxes


def _chunks(seq: list, size: int = BATCH):
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


def _store(
    *, source: FileSource, rows: list[_Row], images: dict[str, CheckedImage], study: Study | None, upload: Upload | None
) -> ImportReport:
    report = ImportReport(rows_total=len(rows))
    written: list[tuple[str, str]] = []
    written_renditions: list[str] = []
    try:
        with transaction.atomic():
            # Originals, once per hash, and their display renditions.
            name_of = {}
            for name, c in images.items():
                name_of.setdefault(c.sha256, (name, c))
            shas = list(name_of)
            existing_images: set[str] = set()
            for chunk in _chunks(shas):
                existing_images.update(Image.objects.filter(sha256__in=chunk).values_list("sha256", flat=True))
            boxes = sorted(display_boxes(study))
            have: set[tuple[str, int, bool]] = set()
            for chunk in _chunks(shas):
                have.update(
                    Rendition.objects.filter(source_id__in=chunk).values_list("source_id", "long_side", "square")
                )
            new_images, new_renditions = [], []
            for sha, (name, c) in name_of.items():
                missing = [b for b in boxes if (sha, *b) not in have]
                if sha in existing_images and not missing:
                    continue
                data = source.read(name)
                if sha not in existing_images:
                    if image_store(data=data, sha256=sha, ext=c.ext):
                        written.append((sha, c.ext))
                    new_images.append(Image(sha256=sha, format=c.ext, width=c.width, height=c.height, size_bytes=len(data)))
                for long_side, square in missing:
                    encoded, w, h = rendition_bytes(data, long_side=long_side, square=square)
                    rsha = sha256_hex(encoded)
                    if rendition_store(data=encoded, sha256=rsha):
                        written_renditions.append(rsha)
                    new_renditions.append(
                        Rendition(source_id=sha, long_side=long_side, square=square, sha256=rsha, width=w, height=h, size_bytes=len(encoded))
                    )
                if len(new_images) >= BATCH:
                    Image.objects.bulk_create(new_images, ignore_conflicts=True)
                    report.images_stored += len(new_images)
                    new_images = []
            Image.objects.bulk_create(new_images, ignore_conflicts=True)
            report.images_stored += len(new_images)
            Rendition.objects.bulk_create(new_renditions, batch_size=BATCH, ignore_conflicts=True)
            del new_renditions

            names = sorted({r.generator for r in rows})
            gens = {g.name: g for g in Generator.objects.filter(name__in=names)}
            for n in names:
                if n not in gens:
                    gens[n], created = Generator.objects.get_or_create(name=n)
                    if created:
                        report.generators_created.append(n)

            prompts = _store_prompts(rows, report)

            # Outputs: what exists already is counted, the rest inserted in batches.
            existing_outputs: set[tuple[int, int, str]] = set()
            prompt_ids = sorted({p.pk for p in prompts.values()})
            for chunk in _chunks(prompt_ids):
                existing_outputs.update(
                    Output.objects.filter(prompt_id__in=chunk).values_list("generator_id", "prompt_id", "image_id")
                )
            batch: list[Output] = []
            for r in rows:
                key = (gens[r.generator].pk, prompts[r.prompt].pk, images[r.image].sha256)
                if key in existing_outputs:
                    report.rows_existing += 1
                    continue
                existing_outputs.add(key)
                batch.append(Output(generator_id=key[0], prompt_id=key[1], image_id=key[2], seed=r.seed, metadata=r.metadata,
                                    upload=upload, target_text=r.target_text))
                if len(batch) >= BATCH:
                    report.output_ids += [o.pk for o in Output.objects.bulk_create(batch)]
                    batch = []
            if batch:
                report.output_ids += [o.pk for o in Output.objects.bulk_create(batch)]
            report.rows_imported = len(report.output_ids)

            if study is not None:
                study.generators.add(*gens.values())
                if not study.categories:
                    for chunk in _chunks(prompt_ids):
                        study.prompts.add(*chunk)
    except IntegrityError as exc:
        files_orphaned_remove(written, written_renditions)
        msg = str(exc).splitlines()[0]
        raise ImportRejected([RowError(None, f"conflicts with outputs already stored ({msg[:200]})")]) from None
    except BaseException:
        files_orphaned_remove(written, written_renditions)
        raise
    return report


def _store_prompts(rows: list[_Row], report: ImportReport) -> dict[str, Prompt]:
    first: dict[str, _Row] = {}
    for r in rows:
        first.setdefault(r.prompt, r)
    by_sha = {prompt_text_sha256(text): text for text in first}
    prompts: dict[str, Prompt] = {}
    for chunk in _chunks(list(by_sha)):
        for p in Prompt.objects.filter(text_sha256__in=chunk):
            prompts[p.text] = p
    new = [
        Prompt(text=text, text_sha256=sha, category=first[text].category, questions=first[text].questions)
        for sha, text in by_sha.items()
        if text not in prompts
    ]
    for p in Prompt.objects.bulk_create(new, batch_size=BATCH):
        prompts[p.text] = p
    report.prompts_created = len(new)
    if len(new) and new[0].pk is None:  # a backend that returns no ids: read them back
        for chunk in _chunks(list(by_sha)):
            for p in Prompt.objects.filter(text_sha256__in=chunk):
                prompts[p.text] = p
    # Existing prompts gain a category or questions they did not have yet.
    for text, p in prompts.items():
        r = first[text]
        changed = []
        if r.category and not p.category:
            p.category = r.category
            changed.append("category")
        if r.questions and not p.questions:
            p.questions = r.questions
            changed.append("questions")
        if changed:
            p.save(update_fields=changed)
    return prompts
