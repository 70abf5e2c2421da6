"""API token authentication with a lifetime (ARENA_TOKEN_TTL_HOURS). Kept apart: DRF imports it at start-up."""

from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication

from . import rawsql
from .ttl_cache import TTLCache


def token_expires_at(token):
    hours = settings.ARENA_TOKEN_TTL_HOURS
    return token.created + timedelta(hours=hours) if hours else None


class ExpiringTokenAuthentication(TokenAuthentication):
    """DRF token auth; a token older than ARENA_TOKEN_TTL_HOURS is refused."""

    def authenticate_credentials(self, key):
        user, token = self._token_with_user(key)
        expires = token_expires_at(token)
        if expires is not None and expires <= timezone.now():
            raise exceptions.AuthenticationFailed("This token has expired; request a new one at /api/token/.")
        return user, token

    def _token_with_user(self, key):
        """DRF's lookup (the token and its user, in one statement, remembered for a few seconds),
        without compiling a query per request."""
        token_model, user_model = self.get_model(), get_user_model()
        row = TOKEN_ROWS.get(key)
        if row is None:
            row = self._row(key, token_model, user_model)
            TOKEN_ROWS.set(key, row)
        n = rawsql.width(token_model)
        token = rawsql.instance(token_model, row[:n])
        user = rawsql.instance(user_model, row[n:])
        token._state.fields_cache["user"] = user
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        return user, token

    @staticmethod
    def _row(key, token_model, user_model):
        sql = (f"SELECT {rawsql.columns(token_model, 't')}, {rawsql.columns(user_model, 'u')}"
               f" FROM {rawsql.q(token_model._meta.db_table)} t JOIN {rawsql.q(user_model._meta.db_table)} u"
               f" ON u.{rawsql.q(user_model._meta.pk.column)} = t.{rawsql.q(token_model._meta.get_field('user').column)}"
               f" WHERE t.{rawsql.q(token_model._meta.pk.column)} = %s")
        with rawsql.cursor() as cursor:
            cursor.execute(sql, [key])
            row = cursor.fetchone()
        if row is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        return row


# Token and user rows by token key, as every API request reads them first. A token or user saved
# or deleted in this process is read afresh at once, elsewhere within the TTL (README "API").
TOKEN_ROWS = TTLCache(ttl=5.0, maxsize=10_000)


def token_rows_forget(**_) -> None:
    """Receiver for a token or user saved or deleted: this process reads them afresh."""
    TOKEN_ROWS.clear()
