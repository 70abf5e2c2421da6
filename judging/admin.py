from django.contrib import admin
from django.utils.html import format_html

from .models import Embedding, GeneratorMetric, JudgeRubric, JudgeRun, JudgeVote, OutputScore, ReferenceSet, SafetyScreen, ScoreJob
from .scorers.nsfw import NsfwScorer
from .screening import outputs_release
from .services import job_requeue


@admin.register(ScoreJob)
class ScoreJobAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "scorer", "study", "status", "done", "total", "items_per_second", "created_at"]
    list_filter = ["kind", "scorer", "status"]
    readonly_fields = [f.name for f in ScoreJob._meta.fields]
    actions = ["queue_again"]

    @admin.action(description="Queue again (failed or lost jobs)")
    def queue_again(self, request, queryset):
        jobs = [j for j in queryset if j.status != ScoreJob.Status.RUNNING]
        for job in jobs:
            job_requeue(job=job)
        self.message_user(request, f"{len(jobs)} job(s) queued again.")


@admin.register(OutputScore)
class OutputScoreAdmin(admin.ModelAdmin):
    list_display = ["output", "scorer", "model_id", "value", "summary", "created_at"]
    list_filter = ["scorer", "model_id"]
    raw_id_fields = ["output"]

    @admin.display(description="what the scorer saw")
    def summary(self, obj):
        """The OCR's recognised text against the target, the safety screen's labels, or why skipped."""
        d = obj.details or {}
        if "skipped" in d:
            return f"skipped: {d['skipped']}"
        if "recognised" in d:
            return f"read {d['recognised']!r} for {d.get('target', '')!r}" + (f" ({d['reason']})" if d.get("reason") else "")
        if "labels" in d:
            return ", ".join(d["labels"])
        return ""


@admin.register(GeneratorMetric)
class GeneratorMetricAdmin(admin.ModelAdmin):
    list_display = ["generator", "study", "metric", "value", "n", "reference", "computed_at"]
    list_filter = ["metric", "study"]


@admin.register(ReferenceSet)
class ReferenceSetAdmin(admin.ModelAdmin):
    list_display = ["name", "source", "n_images", "created_at"]
    search_fields = ["name", "description"]
    raw_id_fields = ["images"]


@admin.register(Embedding)
class EmbeddingAdmin(admin.ModelAdmin):
    list_display = ["image", "model_id", "dim", "created_at"]
    list_filter = ["model_id"]
    raw_id_fields = ["image"]


@admin.register(SafetyScreen)
class SafetyScreenAdmin(admin.ModelAdmin):
    """Flags review for the safety screen: outputs scored unsafe are withheld from studies
    that screen until staff release them here (action "Release to annotators")."""

    list_display = ["output", "image", "value", "labels", "released", "created_at"]
    ordering = ["-value"]
    raw_id_fields = ["output"]
    actions = ["release"]

    def get_queryset(self, request):
        return super().get_queryset(request).filter(scorer=NsfwScorer.name).select_related("output__image", "output__screening_release")

    @admin.display(description="image")
    def image(self, obj):
        return format_html('<img src="{}" alt="" style="max-height:64px">', obj.output.image.url)

    @admin.display(description="labels")
    def labels(self, obj):
        return ", ".join((obj.details or {}).get("labels", []))

    @admin.display(boolean=True, description="released")
    def released(self, obj):
        return hasattr(obj.output, "screening_release")

    @admin.action(description="Release to annotators")
    def release(self, request, queryset):
        n = outputs_release(output_ids=list(queryset.values_list("output_id", flat=True)), user=request.user)
        self.message_user(request, f"{n} output(s) released to annotators.")


@admin.register(JudgeRun)
class JudgeRunAdmin(admin.ModelAdmin):
    list_display = ["id", "judge", "study", "sample", "verdicts", "failures", "requests", "prompt_tokens", "completion_tokens"]
    list_filter = ["judge"]
    readonly_fields = [f.name for f in JudgeRun._meta.fields]


@admin.register(JudgeVote)
class JudgeVoteAdmin(admin.ModelAdmin):
    """A judge's verdicts with the raw answers (read only: they are what the judge said)."""

    list_display = ["id", "judge", "kind", "criterion", "output", "output_b", "question_index", "score", "choice", "consistent", "failed"]
    list_filter = ["judge", "kind", "failed", "consistent"]
    readonly_fields = [f.name for f in JudgeVote._meta.fields]


@admin.register(JudgeRubric)
class JudgeRubricAdmin(admin.ModelAdmin):
    list_display = ["study", "criterion", "updated_at"]
    readonly_fields = ["study", "criterion", "text", "updated_at"]  # edited in the study setup, where it is checked
