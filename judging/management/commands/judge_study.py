import time

from django.core.management.base import BaseCommand, CommandError

from arena.models import Study
from judging.judge_runs import JudgeRunRefused, judge_run_enqueue
from judging.models import JudgeRun, ScoreJob


class Command(BaseCommand):
    help = (
        "Queue a run of an MLLM judge on a study's tasks (ratings, good/bad, pairwise in both orders, yes/no "
        "questions) and print its progress. Tasks this judge configuration already answered are not asked again, "
        "so a stopped or failed run is resumed by running the command again."
    )

    def add_arguments(self, parser):
        parser.add_argument("slug", help="the study's slug")
        parser.add_argument("--judge", required=True, help="a judge name from ARENA_JUDGES or ARENA_JUDGE_NAME")
        parser.add_argument("--sample", type=int, default=None,
                            help="judge only the first N tasks (those people voted on first) to see the agreement early")
        parser.add_argument("--no-wait", action="store_true", help="queue the run and return at once")

    def handle(self, *args, slug: str, judge: str, sample: int | None, no_wait: bool, **options):
        study = Study.objects.filter(slug=slug).first()
        if study is None:
            raise CommandError(f"No study {slug!r}")
        try:
            run = judge_run_enqueue(study=study, judge=judge, sample=sample)
        except JudgeRunRefused as exc:
            raise CommandError(str(exc)) from None
        what = f"a sample of {sample} task(s)" if sample else "every task"
        self.stdout.write(f"judge run {run.pk} (job {run.job_id}): {judge} on {study.slug}, {what}")
        if no_wait:
            return
        shown = None
        try:
            while True:
                job = ScoreJob.objects.get(pk=run.job_id)
                state = (job.status, job.done, job.total)
                if state != shown:
                    shown = state
                    self.stdout.write(f"  {job.status}: {job.done}/{job.total or '?'} task(s)"
                                      + (f", {job.items_per_second:.2f}/s" if job.items_per_second else ""))
                if job.status in (ScoreJob.Status.DONE, ScoreJob.Status.FAILED):
                    break
                time.sleep(1.0)
        except KeyboardInterrupt:
            self.stdout.write("stopped waiting; the run goes on in the worker (staff jobs page)")
            return
        if job.status == ScoreJob.Status.FAILED:
            raise CommandError(f"judge run {run.pk} failed: {job.message}")
        r = JudgeRun.objects.get(pk=run.pk)
        self.stdout.write(self.style.SUCCESS(
            f"{job.message}; {r.requests} request(s), {r.prompt_tokens} prompt + {r.completion_tokens} completion tokens"
        ))
