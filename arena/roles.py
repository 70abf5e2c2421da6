"""Roles are Django groups; admins are staff users."""


from django.contrib.auth.models import AnonymousUser, User

from .ttl_cache import TTLCache

RESEARCHER = "researcher"
ANNOTATOR = "annotator"
ROLE_GROUPS = (RESEARCHER, ANNOTATOR)


GROUPS_CACHE = TTLCache(ttl=30.0, maxsize=10_000)


def user_groups(user: User | AnonymousUser) -> frozenset[str]:
    """Group names, remembered per process for a few seconds (a change applies within 30 s)."""
    if not user.is_authenticated:
        return frozenset()
    return GROUPS_CACHE.get_or_set(user.pk, lambda: frozenset(user.groups.values_list("name", flat=True)))


def _in_group(user: User | AnonymousUser, name: str) -> bool:
    return name in user_groups(user)


def is_admin(user) -> bool:
    return bool(user.is_authenticated and user.is_active and user.is_staff)


def is_researcher(user) -> bool:
    return is_admin(user) or _in_group(user, RESEARCHER)


def is_annotator(user) -> bool:
    return bool(user.is_authenticated and (is_admin(user) or _in_group(user, ANNOTATOR)))


def role_required(check, *, login_url: str | None = None):
    """View decorator: anonymous users go to the login page, signed-in users without the role get 403."""
    from functools import wraps

    from django.contrib.auth.views import redirect_to_login
    from django.core.exceptions import PermissionDenied

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path(), login_url)
            if not check(request.user):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


staff_required = role_required(is_admin)
researcher_required = role_required(is_researcher)
annotator_required = role_required(is_annotator)


def roles_context(request) -> dict:
    """Template context: which top-bar links the signed-in user gets (group names are cached briefly)."""
    user = getattr(request, "user", None)
    if user is None:
        return {}
    return {"can_read_studies": is_researcher(user)}
