"""API token authentication with a lifetime (ARENA_TOKEN_TTL_HOURS). Kept apart: DRF imports it at start-up."""

from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication


def token_expires_at(token):
    hours = settings.ARENA_TOKEN_TTL_HOURS
    return token.created + timedelta(hours=hours) if hours else None


class ExpiringTokenAuthentication(TokenAuthentication):
    """DRF token auth; a token older than ARENA_TOKEN_TTL_HOURS is refused."""

    def authenticate_credentials(self, key):
        user, token = super().authenticate_credentials(key)
        expires = token_expires_at(token)
        if expires is not None and expires <= timezone.now():
            raise exceptions.AuthenticationFailed("This token has expired; request a new one at /api/token/.")
        return user, token
