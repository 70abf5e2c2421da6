"""REST API of the ratings app: the stored leaderboard (public boards are public) and the
exports (researchers and staff): votes as CSV/JSONL/Parquet, preference pairs."""

from __future__ import annotations

from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.permissions import AllowAny, BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from arena import hooks, roles
from arena.api_schema import ExportErrorSerializer, LeaderboardSerializer, errors
from arena.models import Study

from .exports import (
    CONTENT_TYPES,
    PREFERENCE_FORMATS,
    VOTE_FORMATS,
    ExportError,
    export_criterion_get,
    preferences_export_chunks,
    votes_export_chunks,
)
from .selectors import board_visible_to, criterion_of, leaderboard_get
from .services import ratings_catch_up


class LeaderboardApi(APIView):
    permission_classes = [AllowAny]  # checked per study below: public boards are public

    @extend_schema(
        parameters=[
            OpenApiParameter("criterion", str, description="criterion slug (default: the study's first)"),
            OpenApiParameter("category", str, description="prompt category (default: all prompts)"),
        ],
        responses={
            200: OpenApiResponse(LeaderboardSerializer, description="the stored board with live Elo merged in "
                                 "(before any vote is rated: `detail` and an empty `generators`)"),
            **errors(e401="not signed in (private board)", e403="not a researcher (private board)",
                     e404="no such study or criterion"),
        },
    )
    def get(self, request, slug: str):
        study = get_object_or_404(Study, slug=slug)
        if not board_visible_to(request.user, study):
            if not request.user.is_authenticated:
                return Response({"detail": "Authentication credentials were not provided."}, status=401)
            return Response({"detail": "Leaderboards are for researchers and staff."}, status=403)
        ratings_catch_up(study_id=study.pk)
        criterion, _ = criterion_of(study, request.query_params.get("criterion"))
        board = leaderboard_get(study=study, criterion=criterion, category=request.query_params.get("category", ""))
        extras = hooks.call("board_extras", study=study, criterion=criterion, board=board, default={})
        metrics = extras.get("metrics")
        if metrics:
            metrics = {k: v for k, v in metrics.items() if k != "scatters"}
        profile = extras.get("profile")
        extra = {
            "metrics": metrics,
            "safety": (board or {}).get("safety"),
            "judges": extras.get("judges"),
            "question_checks": (board or {}).get("question_checks"),
            "quality_profile": (
                {"axes": profile["axes"], "generators": [{"name": g["name"], "values": g["values"]} for g in profile["generators"]]}
                if profile else None
            ),
        }
        if board is None:
            return Response({"detail": "No votes have been rated yet.", "generators": [], **extra}, status=200)
        board.update(extra)
        return Response(board)


# --------------------------------------------------------------------------- exports


class IsResearcher(BasePermission):
    message = "Only researchers and staff can export votes."

    def has_permission(self, request, view):
        return roles.is_researcher(request.user)


class ExportNegotiation(BaseContentNegotiation):
    """Here `?format=` names the export's file type, not a DRF renderer: errors are always JSON."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class VotesExportQuerySerializer(serializers.Serializer):
    format = serializers.ChoiceField(choices=VOTE_FORMATS, default="csv")
    criterion = serializers.SlugField(required=False, help_text="criterion slug (default: every criterion)")


class PreferencesExportQuerySerializer(serializers.Serializer):
    format = serializers.ChoiceField(
        choices=PREFERENCE_FORMATS, default="parquet",
        help_text="parquet: images as bytes; jsonl: images as paths relative to MEDIA_URL",
    )
    criterion = serializers.SlugField(required=False, help_text="criterion slug (may be left out when the study has only one)")


def _download(chunks, *, fmt: str, filename: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(chunks, content_type=CONTENT_TYPES[fmt])
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


class _ExportApi(APIView):
    permission_classes = [IsResearcher]
    content_negotiation_class = ExportNegotiation

    def query(self, request, serializer_class):
        ser = serializer_class(data=request.query_params)
        ser.is_valid(raise_exception=True)
        return ser.validated_data

    def criterion(self, study, slug, *, required=False):
        try:
            return export_criterion_get(study=study, slug=slug, required=required)
        except ExportError as exc:
            raise serializers.ValidationError({"criterion": [str(exc)]}) from None


class VotesExportApi(_ExportApi):
    @extend_schema(
        operation_id="export_votes",
        tags=["exports"],
        parameters=[VotesExportQuerySerializer],
        responses={
            **{(200, CONTENT_TYPES[fmt].split(";")[0]): OpenApiResponse(OpenApiTypes.BINARY, description="one row per vote")
               for fmt in VOTE_FORMATS},
            400: OpenApiResponse(ExportErrorSerializer, description="an unknown format or criterion"),
            **errors(e401="not signed in", e403="not a researcher", e404="no such study"),
        },
    )
    def get(self, request, slug: str):
        study = get_object_or_404(Study, slug=slug)
        q = self.query(request, VotesExportQuerySerializer)
        criterion = self.criterion(study, q.get("criterion"))
        fmt = q["format"]
        name = f"{study.slug}-{criterion.slug}-votes" if criterion else f"{study.slug}-votes"
        chunks = votes_export_chunks(study=study, criterion=criterion, fmt=fmt)
        return _download(chunks, fmt=fmt, filename=f"{name}.{fmt}")


class PreferencesExportApi(_ExportApi):
    @extend_schema(
        operation_id="export_preferences",
        tags=["exports"],
        parameters=[PreferencesExportQuerySerializer],
        responses={
            **{(200, CONTENT_TYPES[fmt].split(";")[0]): OpenApiResponse(
                OpenApiTypes.BINARY, description="preference pairs in Pick-a-Pic's columns"
            ) for fmt in PREFERENCE_FORMATS},
            400: OpenApiResponse(ExportErrorSerializer, description="an unknown format, or no criterion named when the study has several"),
            **errors(e401="not signed in", e403="not a researcher", e404="no such study"),
        },
    )
    def get(self, request, slug: str):
        study = get_object_or_404(Study, slug=slug)
        q = self.query(request, PreferencesExportQuerySerializer)
        criterion = self.criterion(study, q.get("criterion"), required=True)
        fmt = q["format"]
        images = "bytes" if fmt == "parquet" else "paths"
        chunks = preferences_export_chunks(study=study, criterion=criterion, images=images, fmt=fmt)
        return _download(chunks, fmt=fmt, filename=f"{study.slug}-{criterion.slug}-preferences.{fmt}")
