from django.core.management.base import BaseCommand, CommandError

from arena.models import Study
from arena.renditions import renditions_make_for_study


class Command(BaseCommand):
    help = "Make the display renditions (pixels only, fitted to each study's box) that studies still lack."

    def add_arguments(self, parser):
        parser.add_argument("--study", help="slug of one study (default: every study)")

    def handle(self, *args, study: str | None, **options):
        studies = Study.objects.all()
        if study:
            studies = studies.filter(slug=study)
            if not studies.exists():
                raise CommandError(f"no study with slug {study!r}")
        total = 0
        for s in studies.order_by("slug"):
            made = renditions_make_for_study(study=s)
            total += made
            self.stdout.write(f"{s.slug}: {made} rendition(s) made ({s.display_long_side} px{', square' if s.display_square else ''})")
        self.stdout.write(self.style.SUCCESS(f"{total} rendition(s) made"))
