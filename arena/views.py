"""Pages of the arena app: home, staff uploads, and image files."""

import mimetypes
import re

from django import forms
from django.conf import settings
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods
from django_htmx.http import HttpResponseClientRedirect

from . import roles
from .imports import ImportRejected
from .models import Study, Upload
from .services import UploadTooLarge, upload_create


def home(request):
    user = request.user
    studies = Study.objects.filter(is_open=True).order_by("name") if roles.is_annotator(user) else []
    return render(
        request,
        "arena/home.html",
        {
            "studies": studies,
            "is_admin": roles.is_admin(user),
            "is_researcher": roles.is_researcher(user),
            "is_annotator": roles.is_annotator(user),
        },
    )


class UploadForm(forms.Form):
    file = forms.FileField(label="Archive (.zip)", widget=forms.ClearableFileInput(attrs={"accept": ".zip"}))
    study = forms.ModelChoiceField(queryset=Study.objects.all(), required=False, to_field_name="slug")


@roles.staff_required
@require_http_methods(["GET", "POST"])
def upload_list(request):
    form = UploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        f = form.cleaned_data["file"]
        try:
            upload = upload_create(fileobj=f, filename=f.name, size=f.size, user=request.user, study=form.cleaned_data["study"])
        except (UploadTooLarge, ImportRejected) as exc:
            form.add_error("file", str(exc))
        else:
            if request.htmx:
                return HttpResponseClientRedirect(upload.get_absolute_url())
            return redirect(upload)
    uploads = Upload.objects.select_related("study", "created_by")[:50]
    status = 400 if form.errors else 200
    template = "arena/uploads.html#upload-form" if request.htmx else "arena/uploads.html"
    return render(request, template, {"form": form, "uploads": uploads}, status=status)


@roles.staff_required
def upload_detail(request, pk: int):
    upload = get_object_or_404(Upload.objects.select_related("study", "created_by"), pk=pk)
    template = "arena/upload_detail.html#upload-status" if request.htmx else "arena/upload_detail.html"
    return render(request, template, {"upload": upload})


_MEDIA_RE = re.compile(r"^images/[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{64}\.(png|jpg|webp)$")


def media_file(request, path: str):
    """Serve a content-addressed image. Its bytes never change, so it may be cached forever."""
    if not _MEDIA_RE.match(path):
        raise Http404("no such image")
    full = settings.MEDIA_ROOT / path
    if not full.is_file():
        raise Http404("no such image")
    response = FileResponse(open(full, "rb"), content_type=mimetypes.guess_type(full.name)[0])
    response["Cache-Control"] = "public, max-age=31536000, immutable"
    return response


def healthz(request):
    """Liveness and database check for load balancers."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return HttpResponse("ok", content_type="text/plain")
