from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from arena.imports import ImportRejected
from arena.models import Study
from arena.services import upload_import_local


class Command(BaseCommand):
    help = "Import model outputs from a .zip or a folder holding manifest.jsonl or manifest.csv."

    def add_arguments(self, parser):
        parser.add_argument("path", help="a .zip archive or a folder")
        parser.add_argument("--study", help="slug of the study the outputs belong to")

    def handle(self, *args, path: str, study: str | None, **options):
        target = None
        if study:
            try:
                target = Study.objects.get(slug=study)
            except Study.DoesNotExist:
                raise CommandError(f"no study with slug {study!r}") from None
        src = Path(path)

        def progress(done: int, total: int) -> None:
            if options["verbosity"] >= 2:
                self.stdout.write(f"checked {done}/{total} rows")

        try:
            upload = upload_import_local(path=src, study=target, progress=progress)
        except ImportRejected as exc:
            lines = [str(e) for e in exc.errors]
            raise CommandError(
                f"{src}: nothing imported, {len(lines)} problem(s):\n  " + "\n  ".join(lines)
            ) from None
        self.stdout.write(self.style.SUCCESS(f"{src}: {upload.message}"))
