"""Stored results of the rating engine. Everything here can be recomputed from votes."""

from django.db import models


class EloState(models.Model):
    """Online Elo for one study and criterion, advanced batch by batch (see README for the order).

    Whether work is left is decided by the votes themselves (`Vote.elo_applied`); the times
    below say when it was asked for and queued, so a lost message is noticed and queued again.
    """

    study = models.ForeignKey("arena.Study", on_delete=models.CASCADE, related_name="+")
    criterion = models.ForeignKey("arena.Criterion", on_delete=models.CASCADE, related_name="+")
    ratings = models.JSONField(default=dict, help_text="generator id -> [rating, votes]")
    votes_applied = models.PositiveIntegerField(default=0)
    last_vote_id = models.BigIntegerField(default=0)
    batches = models.PositiveIntegerField(default=0, help_text="batches applied; each vote stores its batch number")
    requested_at = models.DateTimeField(null=True, blank=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["study", "criterion"], name="elo_state_unique")]

    def __str__(self) -> str:
        return f"Elo of study {self.study_id}, criterion {self.criterion_id}"


class RecomputeState(models.Model):
    """Bookkeeping of the debounced full recompute: at most one live run per study.

    A run is live while `running` and its `heartbeat_at` is fresh; a request (`requested_at`)
    made during a run is served by another run after it.
    """

    study = models.OneToOneField("arena.Study", on_delete=models.CASCADE, related_name="+")
    requested_at = models.DateTimeField(null=True, blank=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    running = models.BooleanField(default=False)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    last_duration_ms = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"recompute of study {self.study_id}"


class LeaderboardResult(models.Model):
    """The full fit of one study, criterion and prompt category ('' for all)."""

    study = models.ForeignKey("arena.Study", on_delete=models.CASCADE, related_name="+")
    criterion = models.ForeignKey("arena.Criterion", on_delete=models.CASCADE, related_name="+")
    category = models.CharField(max_length=100, blank=True)
    computed_at = models.DateTimeField()
    votes_total = models.PositiveIntegerField(default=0)
    data = models.JSONField(default=dict)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["study", "criterion", "category"], name="leaderboard_result_unique"),
        ]

    def __str__(self) -> str:
        return f"leaderboard {self.study_id}/{self.criterion_id}/{self.category or 'all'}"


class AnnotatorQuality(models.Model):
    """Per-annotator quality of one study, written by the full recompute: the staff review list."""

    study = models.OneToOneField("arena.Study", on_delete=models.CASCADE, related_name="+")
    computed_at = models.DateTimeField()
    data = models.JSONField(default=list, help_text="one object per annotator, those marked for review first")

    def __str__(self) -> str:
        return f"annotator quality of study {self.study_id}"
