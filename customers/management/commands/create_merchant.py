"""`manage.py create_merchant --slug S --name N --timezone TZ [--currency C]`."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from customers.services import merchant_create


class Command(BaseCommand):
    help = "Create a merchant (a tenant) with its time zone and currency."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--slug", required=True, help="Short unique name, e.g. acme.")
        parser.add_argument("--name", required=True, help="Display name.")
        parser.add_argument(
            "--timezone", required=True, help="IANA time zone, e.g. America/Toronto."
        )
        parser.add_argument("--currency", default="USD", help="ISO 4217 code (default USD).")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            merchant = merchant_create(
                slug=options["slug"],
                name=options["name"],
                time_zone=options["timezone"],
                currency=options["currency"],
            )
        except ValidationError as exc:
            lines = [f"{field}: {msg}" for field, msgs in exc.message_dict.items() for msg in msgs]
            raise CommandError("\n".join(lines), returncode=2) from exc
        self.stdout.write(
            f"Created merchant {merchant.slug} ({merchant.name}, {merchant.time_zone}, "
            f"{merchant.currency})."
        )
