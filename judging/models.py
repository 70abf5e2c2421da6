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
