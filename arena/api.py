"""REST API of the arena app (token or session auth): API tokens and the OpenAPI schema, uploads
(staff) and voting (annotators, through the same services as the htmx pages, with the same blindness)."""

from django.contrib.auth import authenticate
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from drf_spectacular.views import SpectacularAPIView
from rest_framework import serializers, status
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import PermissionDenied
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny, BasePermission, IsAdminUser, IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from . import questions, roles
from .accounts import auth_failure_record, auth_retry_after, wait_message
from .api_schema import NEXT_TASK_RESPONSES, VOTE_RESPONSES, UploadErrorSerializer, errors
from .authentication import token_expires_at
from .imports import ImportRejected
from .models import ANSWERS, SKIP, Assignment, Study, Upload
from .selectors import study_by_slug
from .services import UploadTooLarge, upload_create
from .voting import (
    ServedTasks,
    VoteError,
    annotator_completion,
    annotator_for_user,
    study_open_to,
    task_images,
    tasks_serve,
    vote_record,
)


# --------------------------------------------------------------------------- tokens and the schema


class TokenInputSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, trim_whitespace=False, style={"input_type": "password"})


class TokenOutputSerializer(serializers.Serializer):
    token = serializers.CharField()
    expires_at = serializers.DateTimeField(allow_null=True, help_text="When the token stops working (null: never).")


class TokenApi(APIView):
    """Exchange a user name and password for an API token (a new one once the old has expired)."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    def get_serializer(self, *args, **kwargs):  # for the schema generator
        return TokenInputSerializer(*args, **kwargs)

    def post(self, request):
        username = str(request.data.get("username", ""))[:150]
        wait = auth_retry_after(scope="token", request=request, username=username)
        if wait is not None:
            return Response({"detail": wait_message(wait)}, status=status.HTTP_429_TOO_MANY_REQUESTS,
                            headers={"Retry-After": str(wait)})
        ser = TokenInputSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        user = authenticate(request=request._request, username=ser.validated_data["username"],
                            password=ser.validated_data["password"])
        if user is None or not user.is_active:
            auth_failure_record(scope="token", request=request, username=username)
            return Response({"detail": "Unable to log in with the user name and password given."},
                            status=status.HTTP_400_BAD_REQUEST)
        token, _ = Token.objects.get_or_create(user=user)
        expires = token_expires_at(token)
        if expires is not None and expires <= timezone.now():
            token.delete()
            token = Token.objects.create(user=user)
        return Response(TokenOutputSerializer({"token": token.key, "expires_at": token_expires_at(token)}).data)


class SchemaApi(SpectacularAPIView):
    """The OpenAPI schema, for signed-in users only; a refusal is JSON like every other API error."""

    permission_classes = [IsAuthenticated]

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = "application/json"
        return response


# --------------------------------------------------------------------------- uploads


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


# --------------------------------------------------------------------------- voting


class IsAnnotator(BasePermission):
    message = "Only annotators can vote."

    def has_permission(self, request, view):
        return roles.is_annotator(request.user)


def _study_for(request, slug: str, *, open_only: bool = False) -> Study:
    study = study_by_slug(slug)
    if study is None or (open_only and not study.is_open):
        raise Http404("No study matches the given query.")
    if not study_open_to(study, request.user):
        raise PermissionDenied("This study is open to invited annotators only.")
    return study


def task_payload(study: Study, annotator, served: ServedTasks | None = None) -> dict:
    """The next-task answer; `served` when the vote's transaction already reserved the tasks."""
    served = served or tasks_serve(study=study, annotator=annotator)
    current, ahead, done = served.current, served.ahead, served.done
    progress = {"done": done, "quota": study.quota_per_annotator}
    if current is None:
        completion = annotator_completion(study=study, annotator=annotator, done=done, has_task=False)
        return {"task": None, "progress": progress, "complete": completion.state == "complete",
                "state": completion.state,
                "completion_code": completion.code if completion.code_kind == "completion" else None}
    return {"task": assignment_payload(study, current), "progress": progress, "complete": False,
            "preload": [img["url"] for a in ahead for img in task_images(study, a)]}


def assignment_payload(study: Study, a: Assignment) -> dict:
    images = task_images(study, a)
    return {
        "assignment": str(a.pk),
        "kind": a.kind,
        "question": a.criterion.question(a.kind),
        "prompt": a.output_left.prompt.text,
        "images": images,
        "expires_at": a.expires_at.isoformat(),
        "answers": [*ANSWERS[a.kind], SKIP],
        "questions": questions.task_questions(a.output_left) if a.kind == "questions" else [],
    }


ASSIGNMENT_MAX, ANSWER_MAX = 64, 20


def _text_field(value, limit: int, *, blank: bool) -> tuple[str, str | None]:
    """A DRF CharField's check: (the trimmed text, or the error it would give)."""
    if value is None:
        return "", "This field may not be null."
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return "", "Not a valid string."
    value = str(value).strip()
    if not value and not blank:
        return value, "This field may not be blank."
    if len(value) > limit:
        return value, f"Ensure this field has no more than {limit} characters."
    return value, None


def vote_input(data) -> dict:
    """The vote's fields, checked as `VoteInputSerializer` (which documents them) would check them,
    with the same error bodies. A plain function: a serializer builds its fields anew for each
    request, a cost the busiest path need not pay."""
    if not hasattr(data, "get"):
        raise serializers.ValidationError(
            {"non_field_errors": [f"Invalid data. Expected a dictionary, but got {type(data).__name__}."]})
    errors: dict = {}
    out = {"answer": "", "questions": None}
    if "assignment" not in data:
        errors["assignment"] = ["This field is required."]
    else:
        out["assignment"], err = _text_field(data["assignment"], ASSIGNMENT_MAX, blank=False)
        if err:
            errors["assignment"] = [err]
    if "answer" in data:
        out["answer"], err = _text_field(data["answer"], ANSWER_MAX, blank=True)
        if err:
            errors["answer"] = [err]
    given = data.get("questions")
    if given is not None and not isinstance(given, dict):
        errors["questions"] = [f'Expected a dictionary of items but got type "{type(given).__name__}".']
    elif given is not None:
        out["questions"], bad = {}, {}
        for k, v in given.items():
            out["questions"][str(k)], err = _text_field(v, ANSWER_MAX, blank=True)
            if err:
                bad[str(k)] = [err]
        if bad:
            errors["questions"] = bad
    if errors:
        raise serializers.ValidationError(errors)
    return out


class VoteInputSerializer(serializers.Serializer):
    """The vote's fields, for the API schema; `vote_input` checks them."""

    assignment = serializers.CharField(max_length=ASSIGNMENT_MAX, help_text="The id of a task served to you.")
    answer = serializers.CharField(
        max_length=ANSWER_MAX, required=False, allow_blank=True, default="",
        help_text="likert: 1-5; binary: good|bad; pairwise: left|right|tie|bothbad; or skip (question checks: skip or leave out).",
    )
    questions = serializers.DictField(
        child=serializers.CharField(max_length=ANSWER_MAX, allow_blank=True), required=False, default=None, allow_null=True,
        help_text='Question checks only: question index -> "yes" or "no", one for every question of the task, '
        'e.g. {"0": "yes", "1": "no"}.',
    )


class JsonAnswers(DefaultContentNegotiation):
    """The voting endpoints answer in JSON, their one renderer, whatever the Accept header says:
    no header parsing on the busiest path."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class NextTaskApi(APIView):
    permission_classes = [IsAnnotator]
    content_negotiation_class = JsonAnswers

    @extend_schema(responses=NEXT_TASK_RESPONSES)
    def get(self, request, slug: str):
        study = _study_for(request, slug, open_only=True)
        return Response(task_payload(study, annotator_for_user(request.user)))


class VoteApi(APIView):
    permission_classes = [IsAnnotator]
    content_negotiation_class = JsonAnswers

    @extend_schema(request=VoteInputSerializer, responses=VOTE_RESPONSES)
    def post(self, request, slug: str):
        study = _study_for(request, slug)
        given = vote_input(request.data)
        annotator = annotator_for_user(request.user)
        try:
            result = vote_record(assignment_id=given["assignment"], annotator=annotator, answer=given["answer"],
                                 study=study, question_answers=given["questions"], serve_ahead=1)
        except VoteError as exc:
            return Response({"detail": str(exc)}, status=exc.status)
        body = {"recorded": result.created, "skipped": result.skipped, "next": task_payload(study, annotator, result.next)}
        if result.vote is not None and study.reveal_after_vote:
            body["revealed"] = {"left": result.vote.generator_left.name,
                                "right": result.vote.generator_right.name if result.vote.generator_right_id else None}
        return Response(body, status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)
