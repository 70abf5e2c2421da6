"""Writes of the arena app. Views, the API, commands and tasks call these."""

from __future__ import annotations

import logging
import shutil
import uuid
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import Min
from django.utils import timezone

from . import derived, hooks
from .imports import MAX_REPORTED_ERRORS, ImportRejected, RowError, outputs_import
from .models import Annotator, Output, Study, Upload, Vote, WithdrawnOutput
from .renditions import rendition_files_orphaned_remove
from .storage import files_orphaned_remove

logger = logging.getLogger(__name__)


class UploadTooLarge(Exception):
    pass


def upload_create(*, fileobj, filename: str, size: int, user, study: Study | None = None) -> Upload:
    """Store an uploaded archive and queue its import (after the transaction commits).

    Once this returns the archive will be imported: if the broker cannot take the message now,
    the upload stays pending and the periodic sweep queues it."""
    limit = settings.ARENA_UPLOAD_MAX_BYTES
    if size > limit:
        raise UploadTooLarge(f"{filename} is {size:,} bytes, over the limit of {limit:,} bytes (ARENA_UPLOAD_MAX_BYTES)")
    if not filename.lower().endswith(".zip"):
        raise ImportRejected([RowError(None, f"{filename} is not a .zip archive")])
    dest = Path(settings.ARENA_UPLOAD_DIR) / f"{uuid.uuid4().hex}.zip"
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "wb") as out:
        if hasattr(fileobj, "chunks"):
            for chunk in fileobj.chunks():
                out.write(chunk)
        else:
            shutil.copyfileobj(fileobj, out)
    with transaction.atomic():
        upload = Upload.objects.create(
            created_by=user if getattr(user, "is_authenticated", False) else None,
            study=study,
            source_name=filename[:255],
            archive=str(dest),
            size_bytes=size,
        )
        transaction.on_commit(lambda: upload_dispatch(upload_id=upload.pk))
    return upload


def upload_dispatch(*, upload_id: int) -> bool:
    """Queue the import of a pending upload unless a message for it is already on its way.
    With the broker down nothing is raised: the upload stays pending and the sweep queues it."""
    from .tasks import upload_import_task

    row = Upload.objects.filter(pk=upload_id, status=Upload.Status.PENDING).values_list("created_at", "queued_at").first()
    if row is None:
        return False
    return derived.dispatch(Upload, pk=upload_id, requested_at=row[0], queued_at=row[1], task=upload_import_task, args=(upload_id,))


def upload_takeover(*, upload_id: int, force: bool = False) -> bool:
    """Put back an import whose worker died (its heartbeat stopped): remove the image files it
    wrote without committing, reset it to pending and queue it. `force` also takes a failed one
    (staff "re-run"), if its archive is still there. True if it was put back."""
    now = timezone.now()
    upload = Upload.objects.filter(pk=upload_id).first()
    if upload is None:
        return False
    if upload.status == Upload.Status.RUNNING:
        if not derived.heartbeat_stale(upload.heartbeat_at, now=now):
            return False
        lookup = {"status": Upload.Status.RUNNING, "heartbeat_at": upload.heartbeat_at}
    elif upload.status == Upload.Status.FAILED and force and upload.archive and Path(upload.archive).exists():
        lookup = {"status": Upload.Status.FAILED}
    elif upload.status == Upload.Status.PENDING:
        if force:
            Upload.objects.filter(pk=upload_id).update(queued_at=None)
        return upload_dispatch(upload_id=upload_id)
    else:
        return False
    with transaction.atomic():
        if not Upload.objects.filter(pk=upload_id, **lookup).update(status=Upload.Status.PENDING, heartbeat_at=None):
            return False
        removed = files_orphaned_remove([tuple(f) for f in upload.files_planned or []])
        # Renditions of the dead run: unreferenced files written before its heartbeat stopped and
        # before every import still running began (so no live import's files are touched).
        running = Upload.objects.filter(status=Upload.Status.RUNNING).exclude(pk=upload_id).aggregate(m=Min("started_at"))["m"]
        cutoff = min(x for x in (running, now - derived.stale_after()) if x is not None)
        removed += rendition_files_orphaned_remove(before=cutoff)
        Upload.objects.filter(pk=upload_id).update(
            files_planned=[], started_at=None, finished_at=None, queued_at=None, rows_checked=0,
            message=f"Queued again at {now:%Y-%m-%d %H:%M:%S} UTC (the previous run stopped; {removed} unfinished file(s) removed).",
        )
    logger.warning("upload %s taken over; %s orphan file(s) removed", upload_id, removed)
    upload_dispatch(upload_id=upload_id)
    return True


def uploads_catch_up() -> int:
    """Queue pending uploads whose message was lost and take over imports whose worker died."""
    return derived.status_rows_catch_up(
        Upload, dispatch=lambda pk: upload_dispatch(upload_id=pk), takeover=lambda pk: upload_takeover(upload_id=pk)
    )


def upload_run(*, upload_id: int) -> Upload | None:
    """Import a pending upload. Claimed atomically, so a retry or a second worker does nothing."""
    now = timezone.now()
    claimed = Upload.objects.filter(pk=upload_id, status=Upload.Status.PENDING).update(
        status=Upload.Status.RUNNING, started_at=now, heartbeat_at=now, queued_at=None
    )
    if not claimed:
        return None
    upload = Upload.objects.select_related("study").get(pk=upload_id)

    def progress(done: int, total: int) -> None:
        Upload.objects.filter(pk=upload_id).update(rows_checked=done, rows_total=total)

    def journal(files: list[tuple[str, str]]) -> None:
        Upload.objects.filter(pk=upload_id).update(files_planned=[list(f) for f in files])

    archive = Path(upload.archive)
    try:
        with derived.keepalive(Upload, pk=upload_id, status=Upload.Status.RUNNING):
            report = outputs_import(path=archive, study=upload.study, upload=upload, progress=progress, before_store=journal)
    except ImportRejected as exc:
        _finish_failed(upload, exc.errors, exc.rows_total)
    except Exception as exc:  # an unexpected fault: record it, never leave the upload "running"
        logger.exception("upload %s failed", upload_id)
        _finish_failed(upload, [RowError(None, f"internal error: {exc}")], 0)
    else:
        _finish_done(upload, report)
        outputs_imported(output_ids=report.output_ids)
    finally:
        archive.unlink(missing_ok=True)
    return upload


def upload_import_local(*, path: Path, study: Study | None = None, user=None, progress=None) -> Upload:
    """Import a .zip or folder on this machine now (`manage.py import_outputs`).

    The same import and the same record as an uploaded archive: the upload row, its outputs and
    their link are written in one transaction, so a rejected import (ImportRejected is raised)
    leaves nothing behind, not even the upload row."""
    path = Path(path)
    with transaction.atomic():
        upload = Upload.objects.create(
            created_by=user if getattr(user, "is_authenticated", False) else None,
            study=study,
            source_name=path.name[:255],
            status=Upload.Status.RUNNING,
            started_at=timezone.now(),
        )
        report = outputs_import(path=path, study=study, upload=upload, progress=progress)
        _finish_done(upload, report)
    outputs_imported(output_ids=report.output_ids)
    return upload


def _finish_done(upload: Upload, report) -> None:
    upload.status = Upload.Status.DONE
    upload.rows_total = report.rows_total
    upload.rows_checked = report.rows_total
    upload.rows_imported = report.rows_imported
    upload.rows_existing = report.rows_existing
    upload.rows_rejected = 0
    upload.errors = []
    upload.message = upload_summary(report)
    upload.finished_at = timezone.now()
    upload.archive = ""
    upload.files_planned = []
    upload.save(
        update_fields=[
            "status", "rows_total", "rows_checked", "rows_imported", "rows_existing",
            "rows_rejected", "errors", "message", "finished_at", "archive", "files_planned",
        ]
    )


def upload_summary(report) -> str:
    parts = [f"{report.rows_imported} output(s) imported"]
    if report.rows_existing:
        parts.append(f"{report.rows_existing} already present")
    if report.generators_created:
        parts.append("new generators: " + ", ".join(report.generators_created))
    return "; ".join(parts) + "."


def _finish_failed(upload: Upload, errors: list[RowError], rows_total: int) -> None:
    upload.status = Upload.Status.FAILED
    upload.rows_total = rows_total
    upload.rows_imported = 0
    upload.rows_rejected = len({e.line for e in errors if e.line}) or (rows_total or 0)
    upload.errors = [e.as_dict() for e in errors[:MAX_REPORTED_ERRORS]]
    upload.message = f"Nothing was imported: {len(errors)} problem(s) found."
    upload.finished_at = timezone.now()
    upload.archive = ""
    upload.files_planned = []
    upload.save(
        update_fields=[
            "status", "rows_total", "rows_imported", "rows_rejected", "errors", "message", "finished_at", "archive", "files_planned",
        ]
    )


def outputs_imported(*, output_ids: list[int]) -> None:
    """New outputs are scored automatically (queued after commit by the scoring app)."""
    if output_ids:
        hooks.call("outputs_imported", output_ids=output_ids)


# --------------------------------------------------------------------------- exclusions


def annotator_exclusion_set(*, annotator: Annotator, excluded: bool, reason: str = "") -> None:
    """Exclude an annotator from every rating (votes are kept), or include them again.

    The ratings of each study they voted in are recounted from the same transaction (the Elo is
    reset there and asked for again), so a lost message cannot leave their votes counted.
    """
    with transaction.atomic():
        annotator.excluded = excluded
        annotator.excluded_reason = reason[:300] if excluded else ""
        annotator.excluded_at = timezone.now() if excluded else None
        annotator.save(update_fields=["excluded", "excluded_reason", "excluded_at"])
        study_ids = list(Vote.objects.filter(annotator=annotator).values_list("study_id", flat=True).distinct().order_by())
        hooks.call("votes_recounted", study_ids=study_ids)


def output_withdrawal_set(*, study: Study, output: Output, withdrawn: bool, reason: str = "", by=None) -> None:
    """Withdraw an output from a study (its votes are kept, left out of every number), or restore it.

    Like excluding an annotator: the study's ratings are recounted from the same transaction.
    """
    with transaction.atomic():
        if withdrawn:
            WithdrawnOutput.objects.get_or_create(study=study, output=output, defaults={"reason": reason[:300], "by": by})
        else:
            WithdrawnOutput.objects.filter(study=study, output=output).delete()
        hooks.call("votes_recounted", study_ids=[study.pk])
