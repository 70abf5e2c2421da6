"""API for scoring jobs: progress, throughput and errors (the staff page is in ops)."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from arena.api_schema import errors

from .models import ScoreJob
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
