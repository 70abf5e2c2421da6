"""REST API for uploads (staff only, token or session auth)."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from .api_schema import UploadErrorSerializer, errors
from .imports import ImportRejected
from .models import Study, Upload
from .services import UploadTooLarge, upload_create


class UploadOutputSerializer(serializers.ModelSerializer):
    study = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    progress_percent = serializers.IntegerField(read_only=True)
    url = serializers.SerializerMethodField()

    class Meta:
        model = Upload
        fields = [
            "id", "url", "status", "source_name", "study", "size_bytes", "progress_percent",
            "rows_total", "rows_checked", "rows_imported", "rows_existing", "rows_rejected",
            "errors", "message", "created_at", "started_at", "finished_at",
        ]

    def get_url(self, obj) -> str:
        return self.context["request"].build_absolute_uri(f"/api/uploads/{obj.pk}/")


class UploadInputSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="A .zip with manifest.jsonl or manifest.csv and the images.")
    study = serializers.SlugRelatedField(
        slug_field="slug", queryset=Study.objects.all(), required=False, allow_null=True
    )


class UploadListCreateApi(APIView):
    permission_classes = [IsAdminUser]
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(responses={200: UploadOutputSerializer(many=True), **errors(e401="not signed in", e403="not staff")})
    def get(self, request):
        uploads = Upload.objects.select_related("study")[:100]
        return Response(UploadOutputSerializer(uploads, many=True, context={"request": request}).data)

    @extend_schema(request=UploadInputSerializer, responses={
        202: UploadOutputSerializer,
        400: OpenApiResponse(UploadErrorSerializer, description="the archive was refused; nothing was stored"),
        413: OpenApiResponse(UploadErrorSerializer, description="the archive is larger than the upload limit"),
        **errors(e401="not signed in", e403="not staff"),
    })
    def post(self, request):
        ser = UploadInputSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        f = ser.validated_data["file"]
        try:
            upload = upload_create(
                fileobj=f, filename=f.name, size=f.size, user=request.user, study=ser.validated_data.get("study")
            )
        except UploadTooLarge as exc:
            return Response({"file": [str(exc)]}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
        except ImportRejected as exc:
            return Response({"file": [str(e) for e in exc.errors]}, status=status.HTTP_400_BAD_REQUEST)
        data = UploadOutputSerializer(upload, context={"request": request}).data
        return Response(data, status=status.HTTP_202_ACCEPTED, headers={"Location": data["url"]})


class UploadDetailApi(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(responses={200: UploadOutputSerializer, **errors(e401="not signed in", e403="not staff", e404="no such upload")})
    def get(self, request, pk: int):
        upload = get_object_or_404(Upload.objects.select_related("study"), pk=pk)
        return Response(UploadOutputSerializer(upload, context={"request": request}).data)
