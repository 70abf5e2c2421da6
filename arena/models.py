"""Generators, prompts, images and outputs, uploads, studies, annotators and votes."""

import hashlib
import secrets
import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse


class Generator(models.Model):
    """A text-to-image model under evaluation."""

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Prompt(models.Model):
    text = models.TextField()
    text_sha256 = models.CharField(max_length=64, unique=True, editable=False)
    category = models.CharField(max_length=100, blank=True, db_index=True)
    source = models.CharField(max_length=200, blank=True)
    questions = models.JSONField(default=list, blank=True, help_text="Yes/no questions about the prompt (TIFA/DSG style).")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.text[:80]

    def save(self, *args, **kwargs):
        # The lookup key always follows the text, however the prompt was made (import, admin, shell).
        self.text_sha256 = prompt_text_sha256(self.text)
        if "update_fields" in kwargs and kwargs["update_fields"] is not None and "text" in kwargs["update_fields"]:
            kwargs["update_fields"] = {*kwargs["update_fields"], "text_sha256"}
        super().save(*args, **kwargs)


def prompt_text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Image(models.Model):
    """Image bytes, stored once per sha256 under MEDIA_ROOT/images/aa/bb/<sha256>.<ext>."""

    class Format(models.TextChoices):
        PNG = "png", "PNG"
        JPEG = "jpg", "JPEG"
        WEBP = "webp", "WebP"

    sha256 = models.CharField(max_length=64, primary_key=True)
    format = models.CharField(max_length=8, choices=Format.choices)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    size_bytes = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(width__gt=0) & Q(height__gt=0), name="image_positive_size"),
        ]

    def __str__(self) -> str:
        return f"{self.sha256[:12]}.{self.format}"

    @property
    def relative_path(self) -> str:
        return image_relative_path(self.sha256, self.format)

    @property
    def url(self) -> str:
        return settings.MEDIA_URL + self.relative_path


def image_relative_path(sha256: str, ext: str) -> str:
    return f"images/{sha256[:2]}/{sha256[2:4]}/{sha256}.{ext}"


def rendition_relative_path(sha256: str) -> str:
    return f"display/{sha256[:2]}/{sha256[2:4]}/{sha256}.{RENDITION_EXT}"


RENDITION_EXT = "webp"


class Rendition(models.Model):
    """What annotators see of an image: its pixels only, fitted into a study's box, in one format.

    Decoded, turned upright, converted to sRGB, scaled so the long side is exactly `long_side`
    (optionally padded to a square), and written as lossless WebP with no metadata of any kind.
    Stored and served under its own sha256; the original stays for staff and exports.
    """

    source = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="renditions")
    long_side = models.PositiveIntegerField()
    square = models.BooleanField(default=False)
    sha256 = models.CharField(max_length=64, db_index=True)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    size_bytes = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["source", "long_side", "square"], name="rendition_once_per_box"),
        ]

    def __str__(self) -> str:
        return f"{self.sha256[:12]}.{RENDITION_EXT} ({self.width}×{self.height})"

    @property
    def url(self) -> str:
        return settings.MEDIA_URL + rendition_relative_path(self.sha256)


class Output(models.Model):
    """One generated image: a generator's answer to a prompt."""

    generator = models.ForeignKey(Generator, on_delete=models.PROTECT, related_name="outputs")
    prompt = models.ForeignKey(Prompt, on_delete=models.PROTECT, related_name="outputs")
    image = models.ForeignKey(Image, on_delete=models.PROTECT, related_name="outputs")
    seed = models.BigIntegerField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    target_text = models.TextField(blank=True, help_text="Text the image should render (manifest column 'text').")
    upload = models.ForeignKey("Upload", null=True, blank=True, on_delete=models.SET_NULL, related_name="outputs")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["generator", "prompt", "image"], name="output_unique_image"),
            models.UniqueConstraint(
                fields=["generator", "prompt", "seed"], condition=Q(seed__isnull=False), name="output_unique_seed"
            ),
        ]
        indexes = [models.Index(fields=["prompt", "generator"])]

    def __str__(self) -> str:
        return f"output {self.pk}"

    @property
    def sha256(self) -> str:
        return self.image_id

    @property
    def width(self) -> int:
        return self.image.width

    @property
    def height(self) -> int:
        return self.image.height


class Upload(models.Model):
    """One archive of model outputs and what its import did."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Importing"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    study = models.ForeignKey("Study", null=True, blank=True, on_delete=models.SET_NULL, related_name="uploads")
    source_name = models.CharField(max_length=255, blank=True)
    archive = models.CharField(max_length=500, blank=True, help_text="Path of the stored archive while it waits for import.")
    queued_at = models.DateTimeField(null=True, blank=True, help_text="when its import was last queued")
    heartbeat_at = models.DateTimeField(null=True, blank=True, help_text="kept fresh while an import runs")
    files_planned = models.JSONField(
        default=list, blank=True, help_text="image files an import is about to write, removed if it dies before committing"
    )
    size_bytes = models.PositiveBigIntegerField(default=0)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    rows_total = models.PositiveIntegerField(default=0)
    rows_checked = models.PositiveIntegerField(default=0)
    rows_imported = models.PositiveIntegerField(default=0)
    rows_existing = models.PositiveIntegerField(default=0)
    rows_rejected = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True)
    message = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"upload {self.pk} ({self.source_name or 'unnamed'}, {self.status})"

    def get_absolute_url(self) -> str:
        return reverse("arena:upload_detail", args=[self.pk])

    @property
    def finished(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.FAILED)

    @property
    def progress_percent(self) -> int:
        if self.finished:
            return 100
        if not self.rows_total:
            return 0
        return min(99, int(100 * self.rows_checked / self.rows_total))


class Criterion(models.Model):
    """What annotators judge (aesthetics, prompt alignment, ...), with a question per vote kind."""

    slug = models.SlugField(max_length=60, unique=True)
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    likert_question = models.CharField(max_length=300, blank=True)
    binary_question = models.CharField(max_length=300, blank=True)
    pairwise_question = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "criteria"

    def __str__(self) -> str:
        return self.name

    def question(self, kind: str) -> str:
        if kind == VoteKind.QUESTIONS:  # the questions come from the prompt, not the criterion
            return "Does the image show what each question asks? Answer every question."
        return {
            VoteKind.LIKERT: self.likert_question,
            VoteKind.BINARY: self.binary_question,
            VoteKind.PAIRWISE: self.pairwise_question,
        }.get(kind, "") or self.name


class VoteKind(models.TextChoices):
    LIKERT = "likert", "Rating 1–5"
    BINARY = "binary", "Good / bad"
    PAIRWISE = "pairwise", "Pairwise"
    QUESTIONS = "questions", "Question checks"


def _pseudonym() -> str:
    return "ann-" + secrets.token_hex(6)


def _completion_code() -> str:
    return secrets.token_hex(4).upper()


class Study(models.Model):
    class Sampler(models.TextChoices):
        UNIFORM = "uniform", "Uniform"
        ACTIVE = "active", "Active"

    class BootstrapUnit(models.TextChoices):
        VOTES = "votes", "Votes (FastChat's convention)"
        PROMPTS = "prompts", "Prompts (cluster bootstrap)"

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    description = models.TextField(blank=True)
    instructions = models.TextField(blank=True, help_text="Shown to annotators before their first task.")
    generators = models.ManyToManyField(Generator, blank=True, related_name="studies")
    prompts = models.ManyToManyField(Prompt, blank=True, related_name="studies")
    categories = models.JSONField(
        default=list, blank=True, help_text="Prompt categories in the study (empty: the prompts listed, or all)."
    )
    vote_kinds = models.JSONField(default=list, help_text='Enabled vote kinds: any of "likert", "binary", "pairwise", "questions".')
    criteria = models.ManyToManyField(Criterion, related_name="studies")
    overlap_target = models.PositiveSmallIntegerField(
        default=3, help_text="Distinct annotators per item: an item is served to at most this many."
    )
    calibration_items = models.PositiveIntegerField(
        default=0,
        help_text="Calibration set: this many items of each vote kind and criterion go to the first annotators "
        "before any fresh item, so agreement can be measured early (0: none).",
    )
    calibration_annotators = models.PositiveSmallIntegerField(
        default=3, help_text="How many annotators answer each calibration item (at most the overlap target)."
    )
    task_blocks = models.BooleanField(
        default=True,
        help_text="Serve tasks in blocks of one vote kind and criterion, so a key means one thing inside a block.",
    )
    block_size = models.PositiveSmallIntegerField(default=10, help_text="Tasks per block.")
    completion_min_votes = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="Votes a crowd worker needs for the completion code when the study runs out of tasks for them "
        "or closes (empty: the full quota).",
    )
    unserved_code = models.CharField(
        max_length=40, default=_completion_code,
        help_text="Code for crowd workers the study could not serve enough tasks (enter it on Prolific to be paid or returned).",
    )
    min_votes_per_generator = models.PositiveIntegerField(
        default=10,
        help_text="Pairwise votes a generator needs before it is ranked; below this it is shown as provisional.",
    )
    quota_per_annotator = models.PositiveIntegerField(default=50, help_text="Tasks per annotator before completion.")
    is_open = models.BooleanField(default=True)
    allow_new_generators = models.BooleanField(default=True, help_text="Uploads may add generators to this study.")
    reveal_after_vote = models.BooleanField(default=False, help_text="Show generator names after each vote.")
    public_leaderboard = models.BooleanField(default=False)
    both_bad_as_tie = models.BooleanField(default=True, help_text="Count 'both bad' as a tie in ratings.")
    sampler = models.CharField(max_length=10, choices=Sampler.choices, default=Sampler.UNIFORM)

    bootstrap_unit = models.CharField(
        max_length=10, choices=BootstrapUnit.choices, default=BootstrapUnit.VOTES,
        help_text="What the Bradley–Terry bootstrap resamples: votes (comparable with published arenas) or "
        "prompts (honest when votes on one prompt are correlated).",
    )
    review_min_gold_accuracy = models.FloatField(default=0.7, help_text="Mark an annotator for review below this gold accuracy.")
    review_min_agreement = models.FloatField(
        default=0.5, help_text="Mark an annotator for review below this agreement with the others' majority."
    )
    review_max_skip_rate = models.FloatField(default=0.5, help_text="Mark an annotator for review above this skip rate.")
    review_min_median_seconds = models.FloatField(
        default=1.0, help_text="Mark an annotator for review below this median response time (seconds)."
    )
    review_max_left_p = models.FloatField(
        default=0.001, help_text="Mark an annotator for review when their left-side rate differs from 0.5 at this p-value or below."
    )
    display_long_side = models.PositiveIntegerField(
        default=1024,
        help_text="Every image is shown scaled so its long side is exactly this many pixels (aspect ratio kept), "
        "so resolution cannot single out a generator.",
    )
    display_square = models.BooleanField(
        default=False,
        help_text="Also pad every image to a square of that size, so aspect ratio cannot single out a generator either.",
    )
    allowed_users = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="+",
        help_text="Limit voting to these accounts (and the groups below). Empty: every annotator, and crowd links.",
    )
    allowed_groups = models.ManyToManyField(
        "auth.Group", blank=True, related_name="+", help_text="Limit voting to members of these groups.",
    )
    gold_rate = models.FloatField(default=0.0, help_text="Share of tasks that are gold (known-answer) tasks.")
    screen_before_annotators = models.BooleanField(
        default=True,
        help_text="Keep outputs the safety screen scores at or above the threshold away from annotators until staff release them.",
    )
    screen_threshold = models.FloatField(default=0.5, help_text="Unsafe score (0-1) at which the safety screen withholds an output.")
    completion_code = models.CharField(max_length=40, default=_completion_code)
    prolific_completion_url = models.URLField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "studies"
        constraints = [
            models.CheckConstraint(condition=Q(gold_rate__gte=0) & Q(gold_rate__lte=1), name="study_gold_rate_range"),
            models.CheckConstraint(
                condition=Q(display_long_side__gte=64) & Q(display_long_side__lte=4096), name="study_display_long_side_range"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("arena:vote", args=[self.slug])

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        kinds = self.vote_kinds
        if not isinstance(kinds, list) or not kinds:
            raise ValidationError({"vote_kinds": 'List at least one vote kind, e.g. ["pairwise", "likert"].'})
        unknown = [k for k in kinds if k not in VoteKind.values]
        if unknown:
            raise ValidationError(
                {"vote_kinds": f"Unknown vote kind(s) {', '.join(map(str, unknown))}; use {', '.join(VoteKind.values)}."}
            )
        if not isinstance(self.categories, list) or not all(isinstance(c, str) for c in self.categories):
            raise ValidationError({"categories": "Categories must be a list of category names."})


class Annotator(models.Model):
    """Someone who votes: an account, or a pseudonymous crowd worker bound to an external id."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="annotator"
    )
    study = models.ForeignKey(Study, null=True, blank=True, on_delete=models.CASCADE, related_name="crowd_annotators")
    external_id = models.CharField(max_length=100, blank=True, help_text="Prolific participant id.")
    external_study_id = models.CharField(max_length=100, blank=True)
    external_session_id = models.CharField(max_length=100, blank=True)
    pseudonym = models.CharField(max_length=32, unique=True, default=_pseudonym, editable=False)
    excluded = models.BooleanField(default=False, db_index=True)
    excluded_reason = models.CharField(max_length=300, blank=True)
    excluded_at = models.DateTimeField(null=True, blank=True)
    created_from = models.CharField(
        max_length=64, blank=True, db_index=True, editable=False,
        help_text="Keyed hash of the client address that created this crowd annotator (for rate limits).",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["study", "external_id"], condition=~Q(external_id=""), name="annotator_unique_external_id"
            ),
        ]

    def __str__(self) -> str:
        return self.pseudonym


class GoldTask(models.Model):
    """A known-answer task mixed into a study at its gold rate."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="gold_tasks")
    criterion = models.ForeignKey(Criterion, on_delete=models.CASCADE)
    kind = models.CharField(max_length=10, choices=VoteKind.choices)
    output = models.ForeignKey(Output, on_delete=models.CASCADE, related_name="+")
    other_output = models.ForeignKey(
        Output, null=True, blank=True, on_delete=models.CASCADE, related_name="+", help_text="Pairwise only."
    )
    expected_answer = models.CharField(
        max_length=10,
        help_text="likert: 1-5 (±1 accepted); binary: good|bad; pairwise: 'output' or 'other_output' (the better one) or tie.",
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # A question check has no single expected answer.
            models.CheckConstraint(condition=~Q(kind="questions"), name="gold_task_not_question_check"),
        ]

    def __str__(self) -> str:
        return f"gold {self.pk} ({self.kind})"


class Assignment(models.Model):
    """A task served to one annotator. The server alone decides which output is shown left."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No single-column indexes on study and annotator: the composite indexes below lead with them,
    # and a lone study index tempts the planner (before statistics exist) into reading a study's
    # every assignment to count a few items.
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="assignments", db_index=False)
    criterion = models.ForeignKey(Criterion, on_delete=models.CASCADE)
    annotator = models.ForeignKey(Annotator, on_delete=models.CASCADE, related_name="assignments", db_index=False)
    kind = models.CharField(max_length=10, choices=VoteKind.choices)
    output_left = models.ForeignKey(Output, on_delete=models.CASCADE, related_name="+")
    output_right = models.ForeignKey(Output, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    item_key = models.CharField(max_length=80, help_text="What counts as the same item for no-repeat and overlap.")
    gold = models.ForeignKey(GoldTask, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    served_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    answered_at = models.DateTimeField(null=True, blank=True)
    skipped = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["annotator", "study", "item_key"], name="assignment_no_repeat_in_study"),
            models.CheckConstraint(
                condition=Q(kind="pairwise", output_right__isnull=False) | (~Q(kind="pairwise") & Q(output_right__isnull=True)),
                name="assignment_pairwise_has_two_outputs",
            ),
        ]
        indexes = [
            models.Index(fields=["study", "item_key"]),
            # An annotator's open tasks in a study, oldest first, without reading the answered ones.
            models.Index(fields=["annotator", "study", "served_at"], condition=Q(answered_at__isnull=True),
                         name="assignment_unanswered"),
        ]

    def __str__(self) -> str:
        return f"assignment {self.pk}"


class Vote(models.Model):
    """An annotator's answer to one assignment (at most one, enforced by the database)."""

    class Choice(models.TextChoices):
        LEFT = "left", "Left better"
        RIGHT = "right", "Right better"
        TIE = "tie", "Tie"
        BOTH_BAD = "bothbad", "Both bad"

    assignment = models.OneToOneField(Assignment, on_delete=models.CASCADE, related_name="vote")
    # study and annotator are indexed by the composite indexes below, which lead with them.
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="votes", db_index=False)
    criterion = models.ForeignKey(Criterion, on_delete=models.CASCADE)
    annotator = models.ForeignKey(Annotator, on_delete=models.CASCADE, related_name="votes", db_index=False)
    kind = models.CharField(max_length=10, choices=VoteKind.choices)
    output_left = models.ForeignKey(Output, on_delete=models.CASCADE, related_name="+")
    output_right = models.ForeignKey(Output, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    generator_left = models.ForeignKey(Generator, on_delete=models.CASCADE, related_name="+")
    generator_right = models.ForeignKey(Generator, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    prompt_category = models.CharField(max_length=100, blank=True, help_text="The prompt's category when the vote was cast.")
    score = models.SmallIntegerField(
        null=True, blank=True, help_text="likert: 1-5; binary: 1 good, 0 bad; questions: empty (answers in QuestionAnswer)."
    )
    choice = models.CharField(max_length=8, choices=Choice.choices, blank=True, help_text="pairwise only.")
    response_ms = models.PositiveIntegerField()
    is_gold = models.BooleanField(default=False)
    gold_correct = models.BooleanField(null=True, blank=True)
    elo_applied = models.BooleanField(default=False)
    elo_batch = models.PositiveIntegerField(
        null=True, blank=True, help_text="online Elo batch that applied this vote: Elo order is (elo_batch, id)"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(kind="likert", score__gte=1, score__lte=5, choice="")
                    | Q(kind="binary", score__in=[0, 1], choice="")
                    | Q(kind="pairwise", score__isnull=True, choice__in=["left", "right", "tie", "bothbad"])
                    | Q(kind="questions", score__isnull=True, choice="")
                ),
                name="vote_answer_matches_kind",
            ),
        ]
        indexes = [
            models.Index(fields=["study", "criterion", "kind"]),
            # An annotator's votes in a study, latest first by id (the annotator review samples them).
            models.Index(fields=["annotator", "study", "id"], name="vote_annotator_study_id"),
            models.Index(fields=["study", "criterion"], condition=Q(elo_applied=False), name="vote_elo_pending"),
        ]

    def __str__(self) -> str:
        return f"vote {self.pk}"


# The answers each kind of task takes: the one vocabulary the voting page, the API and the
# vote service read. Every task can also be skipped.
SKIP = "skip"
LIKERT_ANSWERS = ("1", "2", "3", "4", "5")
BINARY_ANSWERS = {"good": 1, "bad": 0}
PAIRWISE_ANSWERS = tuple(Vote.Choice.values)
QUESTION_ANSWERS = {"yes": True, "no": False}
ANSWERS = {
    VoteKind.LIKERT: LIKERT_ANSWERS,
    VoteKind.BINARY: tuple(BINARY_ANSWERS),
    VoteKind.PAIRWISE: PAIRWISE_ANSWERS,
    VoteKind.QUESTIONS: tuple(QUESTION_ANSWERS),
}


class QuestionAnswer(models.Model):
    """One yes/no answer of a question-check vote: question `question_index` of the prompt's
    questions, as the annotator was shown it (`question`)."""

    vote = models.ForeignKey(Vote, on_delete=models.CASCADE, related_name="question_answers")
    question_index = models.PositiveSmallIntegerField()
    question = models.TextField(help_text="The question as it was shown.")
    answer = models.BooleanField(help_text="True: yes, False: no.")

    class Meta:
        ordering = ["vote", "question_index"]
        constraints = [
            models.UniqueConstraint(fields=["vote", "question_index"], name="question_answer_once_per_vote"),
        ]

    def __str__(self) -> str:
        return f"vote {self.vote_id} question {self.question_index}: {'yes' if self.answer else 'no'}"


class Flag(models.Model):
    """An annotator's report that an image is unsafe, offensive, biased or broken."""

    class Reason(models.TextChoices):
        UNSAFE = "unsafe", "Unsafe"
        OFFENSIVE = "offensive", "Offensive"
        BIASED = "biased", "Biased or stereotyped"
        BROKEN = "broken", "Broken"

    output = models.ForeignKey(Output, on_delete=models.CASCADE, related_name="flags")
    annotator = models.ForeignKey(Annotator, on_delete=models.CASCADE, related_name="flags")
    assignment = models.ForeignKey(Assignment, null=True, blank=True, on_delete=models.SET_NULL, related_name="flags")
    reason = models.CharField(max_length=12, choices=Reason.choices)
    note = models.CharField(max_length=500, blank=True)
    resolved = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["output", "annotator", "reason"], name="flag_once_per_reason"),
        ]

    def __str__(self) -> str:
        return f"{self.reason} flag on output {self.output_id}"


class AuthFailure(models.Model):
    """A failed sign-in (login form or API token), kept briefly to throttle password guessing."""

    scope = models.CharField(max_length=20)
    key = models.CharField(max_length=64, help_text="Keyed hash of the user name or of the client address.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        indexes = [models.Index(fields=["scope", "key", "created_at"])]

    def __str__(self) -> str:
        return f"{self.scope} failure at {self.created_at:%Y-%m-%d %H:%M}"


class WithdrawnOutput(models.Model):
    """An output staff took out of a study: its votes are kept but left out of every number."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="withdrawn_outputs")
    output = models.ForeignKey(Output, on_delete=models.CASCADE, related_name="withdrawals")
    reason = models.CharField(max_length=300, blank=True)
    by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-at"]
        constraints = [
            models.UniqueConstraint(fields=["study", "output"], name="withdrawn_output_once_per_study"),
        ]

    def __str__(self) -> str:
        return f"output {self.output_id} withdrawn from study {self.study_id}"
