"""API tokens: made, looked up and revoked here only (services, keyword-only).

A token is `sp_` plus 43 URL-safe characters (`secrets.token_urlsafe(32)`, 256 bits). Only
its SHA-256 is stored, so a leaked database does not leak working tokens; a lookup hashes
what the client sent and finds the row by its unique hash (an index lookup, no comparison
of secrets in Python).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import DEFAULT_DB_ALIAS, transaction
from django.utils import timezone

from customers.compiled import CompiledQuery
from customers.models import ApiToken, ApiTokenScope, Merchant

TOKEN_PREFIX = "sp_"  # noqa: S105 (a marker, not a secret)
#: The part of a token shown to people (in the admin, the portal, logs).
SHOWN_CHARACTERS = 8
#: `last_used_at` is written at most this often per token: a busy client would otherwise
#: turn every read into a write of the same row.
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)

MSG_NAME_REQUIRED = "A token needs a name (what uses it, e.g. the loyalty app)."
MSG_BAD_SCOPE = '"{scope}" is not a scope (read or write).'
MSG_EXPIRES_IN_PAST = "The expiry lies in the past."


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def api_token_create(
    *,
    merchant: Merchant,
    name: str,
    scope: str = ApiTokenScope.READ,
    expires_at: dt.datetime | None = None,
    user: AbstractBaseUser | None = None,
) -> tuple[ApiToken, str]:
    """Make a token for the merchant; returns the row and the plaintext, which is not stored
    and cannot be shown again. Raises ValidationError (by field) for an empty name, an
    unknown scope or an expiry in the past."""
    errors: dict[str, str] = {}
    name = name.strip()
    if not name:
        errors["name"] = MSG_NAME_REQUIRED
    if scope not in ApiTokenScope.values:
        errors["scope"] = MSG_BAD_SCOPE.format(scope=scope)
    if expires_at is not None and expires_at <= timezone.now():
        errors["expires_at"] = MSG_EXPIRES_IN_PAST
    if errors:
        raise ValidationError(errors)
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        token = ApiToken.objects.create(
            merchant=merchant,
            name=name[:100],
            prefix=plaintext[:SHOWN_CHARACTERS],
            token_hash=token_hash(plaintext),
            scope=scope,
            expires_at=expires_at,
            created_by_id=user.pk if user is not None else None,
        )
    return token, plaintext


def api_token_revoke(*, token: ApiToken) -> ApiToken:
    """Revoke the token from now on (revoking twice keeps the first time)."""
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token


_TOKEN_COLUMNS = [f.attname for f in ApiToken._meta.concrete_fields]
_MERCHANT_COLUMNS = [f.attname for f in Merchant._meta.concrete_fields]
#: Every request's first read: compiled once and prepared (`customers.compiled`).
_BY_HASH = CompiledQuery(
    lambda token_hash: ApiToken.objects.filter(token_hash=token_hash).values_list(
        *(f.name for f in ApiToken._meta.concrete_fields),
        *(f"merchant__{f.name}" for f in Merchant._meta.concrete_fields),
    ),
    token_hash="\x1fstand-in hash",  # noqa: S106 (a stand-in, not a secret)
)


def api_token_authenticate(*, plaintext: str, now: dt.datetime | None = None) -> ApiToken | None:
    """The usable token with this plaintext (known, not revoked, not expired), with its
    merchant; None otherwise. Records the use, at most once a minute per token."""
    if not plaintext.startswith(TOKEN_PREFIX) or len(plaintext) > 200:
        return None  # not one of ours: no query
    now = now or timezone.now()
    rows = _BY_HASH.rows(token_hash=token_hash(plaintext))
    token = None
    if rows:
        token = ApiToken.from_db(DEFAULT_DB_ALIAS, _TOKEN_COLUMNS, rows[0][: len(_TOKEN_COLUMNS)])
        token.merchant = Merchant.from_db(
            DEFAULT_DB_ALIAS, _MERCHANT_COLUMNS, rows[0][len(_TOKEN_COLUMNS) :]
        )
    if token is None or not token.is_usable(now):
        return None
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        # A conditional UPDATE: two requests in the same minute write once.
        ApiToken.objects.filter(pk=token.pk).exclude(
            last_used_at__gt=now - LAST_USED_RESOLUTION
        ).update(last_used_at=now)
        token.last_used_at = now
    return token
