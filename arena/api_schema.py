"""Response serializers that document the API's bodies in the OpenAPI schema (fields and status codes).

The views build their bodies with services; these serializers describe them for
drf-spectacular (`@extend_schema(responses=...)`), so the schema shows real fields instead of
`additionalProperties: {}`.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

from .models import VoteKind


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="What was wrong, in words.")


class UploadErrorSerializer(serializers.Serializer):
    file = serializers.ListField(child=serializers.CharField(), help_text="Every problem found, each naming its row.")


class ExportErrorSerializer(serializers.Serializer):
    criterion = serializers.ListField(child=serializers.CharField(), required=False)
    format = serializers.ListField(child=serializers.CharField(), required=False)


class TaskImageSerializer(serializers.Serializer):
    side = serializers.ChoiceField(choices=["single", "left", "right"])
    url = serializers.CharField(help_text="Display rendition (content-addressed, no metadata).")
    width = serializers.IntegerField()
    height = serializers.IntegerField()


class TaskSerializer(serializers.Serializer):
    assignment = serializers.UUIDField(help_text="Send it back with the answer.")
    kind = serializers.ChoiceField(choices=VoteKind.choices)
    question = serializers.CharField()
    prompt = serializers.CharField()
    images = TaskImageSerializer(many=True)
    expires_at = serializers.DateTimeField()
    answers = serializers.ListField(child=serializers.CharField(), help_text="The answers this task accepts (and skip).")
    questions = serializers.ListField(
        child=serializers.CharField(), help_text="Question checks: the yes/no questions to answer, index 0 first; "
        "empty for other kinds.",
    )


class ProgressSerializer(serializers.Serializer):
    done = serializers.IntegerField()
    quota = serializers.IntegerField()


class NextTaskSerializer(serializers.Serializer):
    task = TaskSerializer(allow_null=True, help_text="null when there is nothing to do now")
    progress = ProgressSerializer()
    complete = serializers.BooleanField(help_text="The quota is reached.")
    state = serializers.ChoiceField(
        choices=["complete", "no_tasks", "closed"], required=False,
        help_text="Only when there is no task: why (the quota reached, nothing left for you now, the study closed).",
    )
    completion_code = serializers.CharField(allow_null=True, required=False, help_text="Given once the quota is reached.")
    preload = serializers.ListField(child=serializers.CharField(), required=False, help_text="Image URLs of the next tasks.")


class RevealedSerializer(serializers.Serializer):
    left = serializers.CharField(help_text="Generator of the left (or only) image just voted on.")
    right = serializers.CharField(allow_null=True)


class VoteResultSerializer(serializers.Serializer):
    recorded = serializers.BooleanField(help_text="false when the same answer was already recorded (a replay).")
    skipped = serializers.BooleanField()
    next = NextTaskSerializer()
    revealed = RevealedSerializer(required=False, help_text="Only when the study reveals generators after each vote.")


NEXT_TASK_RESPONSES = {
    200: NextTaskSerializer,
    401: OpenApiResponse(ErrorSerializer, description="not signed in"),
    403: OpenApiResponse(ErrorSerializer, description="not an annotator, or the study is for invited annotators only"),
    404: OpenApiResponse(ErrorSerializer, description="no such open study"),
}

VOTE_RESPONSES = {
    201: OpenApiResponse(VoteResultSerializer, description="the vote was recorded"),
    200: OpenApiResponse(VoteResultSerializer, description="a skip, or the same answer sent again"),
    400: OpenApiResponse(ErrorSerializer, description="an answer the task does not accept, or a malformed body"),
    401: OpenApiResponse(ErrorSerializer, description="not signed in"),
    403: OpenApiResponse(ErrorSerializer, description="not an annotator, the study is closed or invitation-only, or the quota is reached"),
    404: OpenApiResponse(ErrorSerializer, description="no such study or task served to you"),
    409: OpenApiResponse(ErrorSerializer, description="the task was already answered"),
    410: OpenApiResponse(ErrorSerializer, description="the task expired; ask for the next one"),
}


class IntervalSerializer(serializers.Serializer):
    mean = serializers.FloatField(allow_null=True, required=False)
    low = serializers.FloatField(allow_null=True, required=False)
    high = serializers.FloatField(allow_null=True, required=False)
    n = serializers.IntegerField(required=False)


class BoardRowSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    bt = serializers.FloatField(allow_null=True, help_text="Bradley–Terry rating, Elo scale, mean 1000.")
    bt_low = serializers.FloatField(allow_null=True)
    bt_high = serializers.FloatField(allow_null=True)
    rank = serializers.IntegerField(allow_null=True, help_text="null while provisional")
    provisional = serializers.BooleanField()
    pairwise_votes = serializers.IntegerField()
    wins = serializers.IntegerField()
    losses = serializers.IntegerField()
    ties = serializers.IntegerField()
    likert = serializers.DictField(allow_null=True, help_text="mean rating 1–5 with its interval and n")
    binary = serializers.DictField(allow_null=True, help_text="good rate with its Wilson interval and n")
    elo = serializers.FloatField(allow_null=True, help_text="online Elo (all prompts only)")
    elo_votes = serializers.IntegerField()


class RecomputeStateSerializer(serializers.Serializer):
    running = serializers.BooleanField()
    requested = serializers.BooleanField(help_text="a recompute is owed (asked for since the last one started)")
    requested_at = serializers.DateTimeField(allow_null=True, required=False)
    finished_at = serializers.DateTimeField(allow_null=True, required=False)
    last_duration_ms = serializers.IntegerField(allow_null=True)
    last_error = serializers.CharField(allow_blank=True, required=False)


class LeaderboardSerializer(serializers.Serializer):
    study = serializers.SlugField()
    criterion = serializers.SlugField()
    category = serializers.CharField(allow_blank=True)
    sampler = serializers.CharField()
    generators = BoardRowSerializer(many=True)
    order = serializers.ListField(child=serializers.IntegerField(), help_text="generator ids, the order of the matrices")
    win_rate = serializers.ListField(child=serializers.ListField(child=serializers.FloatField(allow_null=True)))
    counts = serializers.ListField(child=serializers.ListField(child=serializers.FloatField()))
    votes_total = serializers.IntegerField()
    totals = serializers.DictField(child=serializers.IntegerField(), help_text="votes per kind")
    predicted = serializers.ListField(
        child=serializers.ListField(child=serializers.FloatField(allow_null=True)),
        help_text="win probability of row over column predicted by the ratings")
    stderr = serializers.ListField(child=serializers.FloatField(allow_null=True), help_text="per generator, Elo points")
    bootstrap_rounds = serializers.IntegerField(required=False)
    bootstrap_unit = serializers.ChoiceField(choices=["votes", "prompts"], required=False)
    min_votes = serializers.IntegerField(required=False, help_text="pairwise votes a generator needs to be ranked")
    all_provisional = serializers.BooleanField(required=False)
    provisional_count = serializers.IntegerField(required=False)
    computed_at = serializers.DateTimeField(allow_null=True)
    elo_updated_at = serializers.DateTimeField(allow_null=True)
    elo_votes_applied = serializers.IntegerField()
    recompute = RecomputeStateSerializer()
    position_bias = serializers.DictField(required=False)
    agreement = serializers.DictField(required=False)
    votes_needed = serializers.IntegerField(allow_null=True, required=False)
    votes_needed_status = serializers.CharField(required=False)
    metrics = serializers.DictField(allow_null=True, required=False, help_text="automated metrics next to the ratings")
    metric_agreement = serializers.ListField(
        child=serializers.DictField(), required=False,
        help_text="per metric: Pearson, Spearman, Kendall τ-b and tie-calibrated pairwise accuracy, per generator and per output, with intervals",
    )
    safety = serializers.DictField(allow_null=True, required=False, help_text="unsafe rates and the detector against annotators' flags")
    quality_profile = serializers.DictField(allow_null=True, required=False, help_text="each generator's normalised profile")
    judges = serializers.DictField(
        allow_null=True, required=False,
        help_text="MLLM judges of this criterion (kept apart from human votes): each judge's own Bradley–Terry ranking next to "
        "the people's, pairwise accuracy, Cohen's κ, Spearman and Kendall with intervals, position bias, failures, tokens",
    )
    question_checks = serializers.DictField(
        allow_null=True, required=False,
        help_text="question checks: VQAScore's and each judge's yes/no answers against people's majority per question "
        "(items, tied, answers; per source: overall, generators, categories, each with n, accuracy and its Wilson "
        "interval, hallucinated (source yes, people no) and missed (source no, people yes) with their rates)",
    )
    elo_requested_at = serializers.DateTimeField(allow_null=True, required=False, help_text="online Elo owed since")


class EmptyLeaderboardSerializer(serializers.Serializer):
    detail = serializers.CharField()
    generators = serializers.ListField(child=serializers.DictField(), max_length=0)


def errors(**codes: str) -> dict:
    """`{status: OpenApiResponse(ErrorSerializer, description)}` for the usual refusals."""
    return {int(code[1:]): OpenApiResponse(ErrorSerializer, description=text) for code, text in codes.items()}
