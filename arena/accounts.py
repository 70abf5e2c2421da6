"""Account hygiene: client addresses, sign-in throttling, expiring API tokens, JSON API errors."""

from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.views import LoginView
from django.http import Http404, JsonResponse
from django.utils import timezone
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from .models import AuthFailure

logger = logging.getLogger(__name__)


def client_address(request) -> str:
    """The client's address, from REMOTE_ADDR or the header a trusted proxy sets (ARENA_CLIENT_IP_HEADER)."""
    value = request.META.get(settings.ARENA_CLIENT_IP_HEADER) or request.META.get("REMOTE_ADDR") or ""
    return value.split(",")[0].strip()[:100]


def keyed_hash(text: str) -> str:
    """A stable pseudonym for an address or user name: nothing readable is stored."""
    return hmac.new(settings.SECRET_KEY.encode(), text.encode(), hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------- sign-in throttling


def _failure_keys(request, username: str) -> list[str]:
    keys = [keyed_hash("addr:" + client_address(request))]
    if username:
        keys.append(keyed_hash("user:" + username.strip().lower()[:150]))
    return keys


def auth_retry_after(*, scope: str, request, username: str) -> int | None:
    """Seconds until another try is allowed, or None if this one may go ahead."""
    window = timedelta(seconds=settings.ARENA_AUTH_FAILURE_WINDOW_SECONDS)
    since = timezone.now() - window
    limit = settings.ARENA_AUTH_MAX_FAILURES
    for key in _failure_keys(request, username):
        recent = AuthFailure.objects.filter(scope=scope, key=key, created_at__gte=since).order_by("-created_at")
        times = list(recent.values_list("created_at", flat=True)[:limit])
        if len(times) >= limit:
            return max(1, int((times[-1] + window - timezone.now()).total_seconds()) + 1)
    return None


def auth_failure_record(*, scope: str, request, username: str) -> None:
    AuthFailure.objects.bulk_create([AuthFailure(scope=scope, key=k) for k in _failure_keys(request, username)])
    # Old failures are forgotten; keep the table small.
    AuthFailure.objects.filter(
        created_at__lt=timezone.now() - timedelta(seconds=settings.ARENA_AUTH_FAILURE_WINDOW_SECONDS)
    ).delete()


def wait_message(seconds: int) -> str:
    minutes = (seconds + 59) // 60
    return f"Too many failed sign-ins. Try again in {minutes} minute{'s' if minutes != 1 else ''}."


class ThrottledLoginView(LoginView):
    """Django's login form, answering 429 after ARENA_AUTH_MAX_FAILURES failures."""

    def post(self, request, *args, **kwargs):
        wait = auth_retry_after(scope="login", request=request, username=request.POST.get("username", ""))
        if wait is not None:
            form = self.get_form()
            response = self.render_to_response(self.get_context_data(form=form, throttled=wait_message(wait)))
            response.status_code = 429
            response["Retry-After"] = str(wait)
            return response
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form):
        auth_failure_record(scope="login", request=self.request, username=self.request.POST.get("username", ""))
        return super().form_invalid(form)


# --------------------------------------------------------------------------- API tokens


# --------------------------------------------------------------------------- JSON errors under /api/


def api_exception_handler(exc, context):
    """DRF's handler, and a JSON 500 (never an HTML page) for anything it does not know."""
    response = exception_handler(exc, context)
    if response is None:
        logger.exception("unhandled error in %s", context.get("view").__class__.__name__, exc_info=exc)
        response = Response({"detail": "Internal server error."}, status=status.HTTP_500_INTERNAL_SERVER_ERROR)
    return response


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


def json_or_html_404(request, exception=None):
    from django.views.defaults import page_not_found

    if _is_api(request):
        return JsonResponse({"detail": "Not found."}, status=404)
    return page_not_found(request, exception if exception is not None else Http404())


def json_or_html_500(request):
    from django.views.defaults import server_error

    if _is_api(request):
        return JsonResponse({"detail": "Internal server error."}, status=500)
    return server_error(request)


def json_or_html_403(request, exception=None):
    from django.views.defaults import permission_denied

    if _is_api(request):
        return JsonResponse({"detail": str(exception) or "You do not have permission to do this."}, status=403)
    return permission_denied(request, exception)


def json_or_html_400(request, exception=None):
    from django.views.defaults import bad_request

    if _is_api(request):
        return JsonResponse({"detail": "Bad request."}, status=400)
    return bad_request(request, exception)
