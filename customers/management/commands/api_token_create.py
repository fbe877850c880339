"""`manage.py api_token_create --merchant SLUG --name NAME [--scope read|write]
[--expires-days N]`: prints the new token once on stdout (and what it is on stderr)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from customers.api_tokens import api_token_create
from customers.models import ApiTokenScope, Merchant


class Command(BaseCommand):
    help = (
        "Create an API token for a merchant. The token is printed once on stdout; only its "
        "hash is stored, so it cannot be shown again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--merchant", required=True, help="The merchant's slug.")
        parser.add_argument("--name", required=True, help="What uses it, e.g. loyalty-app.")
        parser.add_argument(
            "--scope",
            choices=ApiTokenScope.values,
            default=ApiTokenScope.READ,
            help="read (default) or write (which includes read).",
        )
        parser.add_argument(
            "--expires-days", type=int, default=None, help="Expire after N days (default never)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        merchant = Merchant.objects.filter(slug=options["merchant"]).first()
        if merchant is None:
            raise CommandError(f'No merchant with the slug "{options["merchant"]}".', returncode=2)
        days = options["expires_days"]
        if days is not None and days < 1:
            raise CommandError("--expires-days must be 1 or more.", returncode=2)
        expires_at = None if days is None else timezone.now() + dt.timedelta(days=days)
        try:
            token, plaintext = api_token_create(
                merchant=merchant,
                name=options["name"],
                scope=options["scope"],
                expires_at=expires_at,
            )
        except ValidationError as exc:
            lines = [f"{field}: {msg}" for field, msgs in exc.message_dict.items() for msg in msgs]
            raise CommandError("\n".join(lines), returncode=2) from exc
        # stdout carries the token alone, so `TOKEN=$(manage.py api_token_create ...)` works.
        self.stderr.write(
            f"Created {token.scope} token {token.name!r} ({token.prefix}…) for {merchant.slug}"
            + (f", expires {token.expires_at:%Y-%m-%d %H:%M} UTC" if token.expires_at else "")
            + ". Copy it now: it is not shown again."
        )
        self.stdout.write(plaintext)
