from django.contrib import admin
from django.db.models import Count, Q
from django.utils.html import format_html

from .models import (
    Annotator, Assignment, Criterion, Flag, Generator, GoldTask, Image, Output, Prompt, QuestionAnswer, Study, Upload, Vote,
)
from .services import annotator_exclusion_set


@admin.register(Generator)
class GeneratorAdmin(admin.ModelAdmin):
    list_display = ["name", "created_at"]
    search_fields = ["name", "description"]


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ["id", "short_text", "category", "source"]
    list_filter = ["category", "source"]
    search_fields = ["text", "category"]
    readonly_fields = ["text_sha256"]

    @admin.display(description="text")
    def short_text(self, obj):
        return obj.text[:100]


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = ["sha256", "format", "width", "height", "size_bytes", "created_at"]
    list_filter = ["format"]
    search_fields = ["sha256"]


@admin.register(Output)
class OutputAdmin(admin.ModelAdmin):
    list_display = ["id", "generator", "prompt", "seed", "thumb", "created_at"]
    list_filter = ["generator", "prompt__category"]
    search_fields = ["generator__name", "prompt__text", "image__sha256"]
    raw_id_fields = ["prompt", "image", "upload"]
    list_select_related = ["generator", "prompt", "image"]

    @admin.display(description="image")
    def thumb(self, obj):
        return format_html('<img src="{}" style="height:48px">', obj.image.url)


@admin.register(Upload)
class UploadAdmin(admin.ModelAdmin):
    list_display = ["id", "source_name", "status", "rows_imported", "rows_rejected", "created_by", "created_at"]
    list_filter = ["status", "study"]
    search_fields = ["source_name", "message"]
    readonly_fields = [f.name for f in Upload._meta.fields]


@admin.register(Criterion)
class CriterionAdmin(admin.ModelAdmin):
    list_display = ["slug", "name"]
    search_fields = ["slug", "name"]


@admin.register(Study)
class StudyAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "is_open", "sampler", "overlap_target", "public_leaderboard", "created_at"]
    list_filter = ["is_open", "sampler", "public_leaderboard"]
    search_fields = ["name", "slug", "description"]
    prepopulated_fields = {"slug": ["name"]}
    filter_horizontal = ["generators", "criteria", "allowed_users", "allowed_groups"]
    raw_id_fields = ["prompts"]


@admin.register(Annotator)
class AnnotatorAdmin(admin.ModelAdmin):
    list_display = ["pseudonym", "user", "study", "external_id", "excluded", "votes", "gold_accuracy", "left_rate", "created_at"]
    list_filter = ["excluded", "study"]
    search_fields = ["pseudonym", "user__username", "external_id"]
    actions = ["exclude_annotators", "include_annotators"]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                n_votes=Count("votes"),
                gold_n=Count("votes", filter=Q(votes__is_gold=True)),
                gold_ok=Count("votes", filter=Q(votes__gold_correct=True)),
                decisive=Count("votes", filter=Q(votes__choice__in=["left", "right"])),
                lefts=Count("votes", filter=Q(votes__choice="left")),
            )
        )

    @admin.display(description="votes", ordering="n_votes")
    def votes(self, obj):
        return obj.n_votes

    @admin.display(description="gold accuracy")
    def gold_accuracy(self, obj):
        return f"{obj.gold_ok / obj.gold_n:.0%} of {obj.gold_n}" if obj.gold_n else "—"

    @admin.display(description="left-side rate")
    def left_rate(self, obj):
        return f"{obj.lefts / obj.decisive:.0%} of {obj.decisive}" if obj.decisive else "—"

    @admin.action(description="Exclude from ratings (votes are kept)")
    def exclude_annotators(self, request, queryset):
        for annotator in queryset:
            annotator_exclusion_set(annotator=annotator, excluded=True, reason=f"excluded by {request.user}")

    @admin.action(description="Include in ratings again")
    def include_annotators(self, request, queryset):
        for annotator in queryset:
            annotator_exclusion_set(annotator=annotator, excluded=False)


@admin.register(GoldTask)
class GoldTaskAdmin(admin.ModelAdmin):
    list_display = ["id", "study", "criterion", "kind", "expected_answer"]
    list_filter = ["study", "kind"]
    raw_id_fields = ["output", "other_output"]


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ["id", "study", "annotator", "kind", "served_at", "answered_at"]
    list_filter = ["study", "kind"]
    raw_id_fields = ["output_left", "output_right", "annotator", "gold"]


class QuestionAnswerInline(admin.TabularInline):
    model = QuestionAnswer
    extra = 0
    can_delete = False
    readonly_fields = ["question_index", "question", "answer"]


@admin.register(Vote)
class VoteAdmin(admin.ModelAdmin):
    list_display = ["id", "study", "criterion", "kind", "annotator", "score", "choice", "response_ms", "created_at"]
    list_filter = ["study", "kind", "criterion"]
    raw_id_fields = ["assignment", "output_left", "output_right", "annotator"]
    inlines = [QuestionAnswerInline]


@admin.register(Flag)
class FlagAdmin(admin.ModelAdmin):
    list_display = ["id", "output", "reason", "annotator", "resolved", "created_at"]
    list_filter = ["reason", "resolved"]
    raw_id_fields = ["output", "annotator", "assignment"]
