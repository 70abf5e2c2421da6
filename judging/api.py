"""REST API of the judging app (staff): scoring jobs with their progress, throughput and errors,
and MLLM judge runs (start one, read its progress)."""

from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from arena.api_schema import ErrorSerializer, errors
from arena.models import Study

from .judge_runs import MAX_SAMPLE, JudgeRunRefused, judge_run_enqueue, judge_runs_recent
from .models import JudgeRun, ScoreJob
from .services import jobs_recent


class JobSerializer(serializers.ModelSerializer):
    study = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    progress_percent = serializers.IntegerField(read_only=True)

    class Meta:
        model = ScoreJob
        fields = [
            "id", "kind", "scorer", "study", "status", "total", "done", "progress_percent", "items_per_second",
            "device", "attempts", "errors", "message", "created_at", "started_at", "finished_at",
        ]


class JobListApi(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(responses={200: JobSerializer(many=True), **errors(e401="not signed in", e403="not staff")})
    def get(self, request):
        return Response(JobSerializer(jobs_recent(), many=True).data)


class JobDetailApi(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(responses={200: JobSerializer, **errors(e401="not signed in", e403="not staff", e404="no such job")})
    def get(self, request, pk: int):
        return Response(JobSerializer(get_object_or_404(ScoreJob, pk=pk)).data)


# --------------------------------------------------------------------------- MLLM judge runs


class JudgeRunSerializer(serializers.ModelSerializer):
    study = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    status = serializers.CharField(source="job.status", read_only=True)
    total = serializers.IntegerField(source="job.total", read_only=True)
    done = serializers.IntegerField(source="job.done", read_only=True)
    progress_percent = serializers.IntegerField(source="job.progress_percent", read_only=True)
    items_per_second = serializers.FloatField(source="job.items_per_second", read_only=True, allow_null=True)
    message = serializers.CharField(source="job.message", read_only=True)
    errors = serializers.JSONField(source="job.errors", read_only=True)
    created_at = serializers.DateTimeField(source="job.created_at", read_only=True)
    finished_at = serializers.DateTimeField(source="job.finished_at", read_only=True, allow_null=True)

    class Meta:
        model = JudgeRun
        fields = [
            "id", "job", "study", "judge", "config", "sample", "status", "total", "done", "progress_percent",
            "verdicts", "failures", "requests", "prompt_tokens", "completion_tokens", "items_per_second", "seconds",
            "message", "errors", "created_at", "finished_at",
        ]


class JudgeRunInputSerializer(serializers.Serializer):
    judge = serializers.CharField(max_length=60, help_text="a judge name from ARENA_JUDGES or ARENA_JUDGE_NAME")
    sample = serializers.IntegerField(min_value=1, max_value=MAX_SAMPLE, required=False, allow_null=True,
                                      help_text="judge only the first N tasks (those people voted on first)")


class JudgeRunListCreateApi(APIView):
    """Staff: the study's judge runs, and starting one (queued on the GPU queue for an in-process
    model, on the CPU queue for an endpoint; tasks already judged by the configuration are skipped)."""

    permission_classes = [IsAdminUser]

    @extend_schema(responses={200: JudgeRunSerializer(many=True), **errors(e401="not signed in", e403="not staff", e404="no such study")})
    def get(self, request, slug: str):
        study = get_object_or_404(Study, slug=slug)
        return Response(JudgeRunSerializer(judge_runs_recent(study=study), many=True).data)

    @extend_schema(request=JudgeRunInputSerializer, responses={
        202: JudgeRunSerializer,
        400: OpenApiResponse(ErrorSerializer, description="no such judge, no judge configured, or a rubric without a score range"),
        **errors(e401="not signed in", e403="not staff", e404="no such study"),
    })
    def post(self, request, slug: str):
        study = get_object_or_404(Study, slug=slug)
        ser = JudgeRunInputSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        try:
            run = judge_run_enqueue(study=study, judge=ser.validated_data["judge"], sample=ser.validated_data.get("sample"),
                                    user=request.user)
        except JudgeRunRefused as exc:
            return Response({"detail": str(exc)}, status=400)
        run = JudgeRun.objects.select_related("job", "study").get(pk=run.pk)
        return Response(JudgeRunSerializer(run).data, status=202,
                        headers={"Location": reverse("api_judge_run", args=[run.pk])})


class JudgeRunDetailApi(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(responses={200: JudgeRunSerializer, **errors(e401="not signed in", e403="not staff", e404="no such run")})
    def get(self, request, pk: int):
        return Response(JudgeRunSerializer(get_object_or_404(JudgeRun.objects.select_related("job", "study"), pk=pk)).data)
