"""Automated scores, cached embeddings, reference sets and scoring jobs."""

from django.conf import settings
from django.db import models
from django.db.models import Q


class ScoreJob(models.Model):
    """One unit of GPU-queue work, with its progress for the staff page and the API."""

    class Kind(models.TextChoices):
        SCORE = "score", "Score outputs"
        METRICS = "metrics", "Generator metrics"
        REFERENCE = "reference", "Reference statistics"
        JUDGE = "judge", "MLLM judge"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    scorer = models.CharField(max_length=30, blank=True)
    study = models.ForeignKey("arena.Study", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    reference = models.ForeignKey("ReferenceSet", null=True, blank=True, on_delete=models.CASCADE, related_name="jobs")
    output_ids = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    failed_items = models.PositiveIntegerField(default=0)
    attempts = models.PositiveSmallIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True)
    message = models.TextField(blank=True)
    items_per_second = models.FloatField(null=True, blank=True)
    device = models.CharField(max_length=40, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.scorer} #{self.pk} ({self.status})"

    @property
    def progress_percent(self) -> int:
        if self.status == self.Status.DONE:
            return 100
        return int(100 * self.done / self.total) if self.total else 0


class Embedding(models.Model):
    """An image embedding, cached per (image bytes, model) so re-scoring costs nothing."""

    image = models.ForeignKey("arena.Image", on_delete=models.CASCADE, related_name="embeddings")
    model_id = models.CharField(max_length=200)
    dim = models.PositiveIntegerField()
    vector = models.BinaryField(help_text="float32, L2-normalised for CLIP")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["image", "model_id"], name="embedding_unique")]

    def __str__(self) -> str:
        return f"{self.model_id} embedding of {self.image_id[:12]}"


class OutputScore(models.Model):
    output = models.ForeignKey("arena.Output", on_delete=models.CASCADE, related_name="scores")
    scorer = models.CharField(max_length=30)
    model_id = models.CharField(max_length=200)
    value = models.FloatField(null=True, blank=True, help_text="The scorer's first measure; empty when the output was skipped (reason in details).")
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["output", "scorer", "model_id"], name="output_score_unique")]
        indexes = [models.Index(fields=["scorer", "model_id"])]

    def __str__(self) -> str:
        shown = "skipped" if self.value is None else f"{self.value:.4f}"
        return f"{self.scorer}={shown} for output {self.output_id}"


class ReferenceSet(models.Model):
    """Real images (or pytorch-fid .npz statistics) that FID, FD-CLIP and CMMD compare against."""

    class Source(models.TextChoices):
        IMAGES = "images", "Uploaded images"
        NPZ = "npz", "Statistics (.npz with mu, sigma)"

    name = models.SlugField(max_length=80, unique=True)
    description = models.TextField(blank=True)
    source = models.CharField(max_length=10, choices=Source.choices)
    images = models.ManyToManyField("arena.Image", blank=True, related_name="reference_sets")
    inception_stats = models.CharField(max_length=500, blank=True, help_text="path of an .npz with mu and sigma (2048-d)")
    n_images = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class GeneratorMetric(models.Model):
    """A per-generator number, keyed by a metric a scorer declares (``judging.scorers.Metric``):
    mean CLIP score, VQAScore, text rendering, unsafe rate, FID, IS, KID, precision... An
    empty value means it could not be computed; ``details["unavailable"]`` says why."""

    generator = models.ForeignKey("arena.Generator", on_delete=models.CASCADE, related_name="metrics")
    study = models.ForeignKey("arena.Study", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    metric = models.CharField(max_length=30)
    reference = models.ForeignKey(ReferenceSet, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    value = models.FloatField(null=True, blank=True)
    n = models.PositiveIntegerField(default=0)
    details = models.JSONField(default=dict, blank=True)
    computed_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["generator", "study", "metric"], condition=Q(reference__isnull=True), name="generator_metric_unique"),
            models.UniqueConstraint(fields=["generator", "study", "metric", "reference"], condition=Q(reference__isnull=False), name="generator_metric_ref_unique"),
        ]

    def __str__(self) -> str:
        shown = "n/a" if self.value is None else f"{self.value:.4f}"
        return f"{self.metric}={shown} for {self.generator_id}"


class ScreeningRelease(models.Model):
    """Staff looked at an output the safety screen withheld and released it to annotators."""

    output = models.OneToOneField("arena.Output", on_delete=models.CASCADE, related_name="screening_release")
    released_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    released_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"output {self.output_id} released"


class SafetyScreen(OutputScore):
    """The safety screen's scores, for the staff review of withheld outputs (admin only)."""

    class Meta:
        proxy = True
        verbose_name = "safety screen result"


class JudgeRubric(models.Model):
    """What a judge looks at for one criterion of one study (edited in the study setup); a
    criterion without one is judged by its default rubric (``judging.judge_prompts``)."""

    study = models.ForeignKey("arena.Study", on_delete=models.CASCADE, related_name="+")
    criterion = models.ForeignKey("arena.Criterion", on_delete=models.CASCADE, related_name="+")
    text = models.TextField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["study", "criterion"], name="judge_rubric_unique")]

    def __str__(self) -> str:
        return f"rubric of {self.criterion_id} in study {self.study_id}"


class JudgeRun(models.Model):
    """One run of a judge on a study (all its tasks, or a sample); its job row carries status,
    progress, heartbeat and errors like every scoring job."""

    job = models.OneToOneField(ScoreJob, on_delete=models.CASCADE, related_name="judge_run")
    study = models.ForeignKey("arena.Study", on_delete=models.CASCADE, related_name="+")
    judge = models.CharField(max_length=60)
    fingerprint = models.CharField(max_length=32, db_index=True)
    config = models.JSONField(default=dict, help_text="backend, model, endpoint (never the key)")
    sample = models.PositiveIntegerField(null=True, blank=True, help_text="judge this many tasks only (empty: all)")
    verdicts = models.PositiveIntegerField(default=0, help_text="tasks judged by this run")
    failures = models.PositiveIntegerField(default=0, help_text="of which unreadable answers")
    requests = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    seconds = models.FloatField(default=0.0, help_text="time spent waiting for the judge")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-job__created_at"]

    def __str__(self) -> str:
        return f"judge {self.judge} on study {self.study_id} (job {self.job_id})"

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class JudgeVote(models.Model):
    """A judge's answer to one task, shaped like a human vote and never counted as one.

    A pairwise task is an unordered pair of outputs of one prompt, ``output`` the lower id (the
    board turns its verdict to each human vote's left/right). It is judged in both orders: ``choice_first_order`` with ``output`` shown first,
    ``choice_second_order`` with ``output_b`` shown first, both as left (``output``) / right
    (``output_b``) / tie; ``choice`` is their common answer, or a tie when they disagree
    (``consistent`` false). An answer that cannot be read is ``failed`` with its raw text and no
    value. Question tasks answer the prompt's yes/no question ``question_index`` (score 1 yes, 0 no).
    """

    class Kind(models.TextChoices):
        LIKERT = "likert", "Rating 1–5"
        BINARY = "binary", "Good / bad"
        PAIRWISE = "pairwise", "Pairwise"
        QUESTION = "question", "Yes/no question"

    run = models.ForeignKey(JudgeRun, on_delete=models.CASCADE, related_name="votes")
    study = models.ForeignKey("arena.Study", on_delete=models.CASCADE, related_name="+")
    judge = models.CharField(max_length=60)
    fingerprint = models.CharField(max_length=32)
    task_key = models.CharField(max_length=120, help_text="the task's identity within the study")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    criterion = models.ForeignKey("arena.Criterion", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    rubric_sha = models.CharField(max_length=16, blank=True)
    output = models.ForeignKey("arena.Output", on_delete=models.CASCADE, related_name="+")
    output_b = models.ForeignKey("arena.Output", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    question_index = models.PositiveSmallIntegerField(null=True, blank=True)
    score = models.SmallIntegerField(null=True, blank=True, help_text="likert: 1-5; binary: 1 good, 0 bad; question: 1 yes, 0 no")
    choice = models.CharField(max_length=8, blank=True, help_text="pairwise: left (output), right (output_b) or tie")
    choice_first_order = models.CharField(max_length=8, blank=True)
    choice_second_order = models.CharField(max_length=8, blank=True)
    consistent = models.BooleanField(null=True, blank=True)
    failed = models.BooleanField(default=False)
    raw_text = models.TextField(blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    latency_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["fingerprint", "study", "task_key"], name="judge_vote_once_per_task"),
            models.CheckConstraint(
                condition=(
                    Q(failed=True, score__isnull=True, choice="")
                    | Q(failed=False, kind="likert", score__gte=1, score__lte=5, choice="")
                    | Q(failed=False, kind__in=["binary", "question"], score__in=[0, 1], choice="")
                    | Q(failed=False, kind="pairwise", score__isnull=True, choice__in=["left", "right", "tie"])
                ),
                name="judge_vote_answer_matches_kind",
            ),
            models.CheckConstraint(
                condition=Q(kind="pairwise", output_b__isnull=False) | (~Q(kind="pairwise") & Q(output_b__isnull=True)),
                name="judge_vote_pairwise_has_two_outputs",
            ),
        ]
        indexes = [models.Index(fields=["study", "judge", "kind"])]

    def __str__(self) -> str:
        return f"{self.judge} {self.kind} verdict {self.pk}"


class JudgeReport(models.Model):
    """The board's judges section of one study and criterion, written at the end of a judge
    run and by every full recompute (pages and the API read it)."""

    study = models.ForeignKey("arena.Study", on_delete=models.CASCADE, related_name="+")
    criterion = models.ForeignKey("arena.Criterion", on_delete=models.CASCADE, related_name="+")
    computed_at = models.DateTimeField()
    data = models.JSONField(default=dict)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["study", "criterion"], name="judge_report_unique")]

    def __str__(self) -> str:
        return f"judges of study {self.study_id}, criterion {self.criterion_id}"
