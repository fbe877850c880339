"""`manage.py seed_demo_campaigns [--merchant demo] [--if-empty]`

Gives a demo merchant its offers, a content block and two campaigns (one sent, with
results; one draft), aimed at the segments `seed_demo_segments` made (`campaigns/demo.py`).
`make run` calls it after `seed_demo_segments`. Refuses a merchant that has campaigns or
offers already, unless `--if-empty`, which then does nothing.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from campaigns.demo import seed_campaigns
from campaigns.models import Campaign, Offer
from customers.models import Merchant


class Command(BaseCommand):
    help = "Give a demo merchant its offers, content and campaigns."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--merchant", default="demo", help="merchant slug")
        parser.add_argument(
            "--if-empty", action="store_true", help="do nothing if it has campaigns or offers"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        merchant = Merchant.objects.filter(slug=options["merchant"]).first()
        if merchant is None:
            raise CommandError(f'unknown merchant "{options["merchant"]}" (run seed_demo first)')
        if (
            Campaign.objects.filter(merchant=merchant).exists()
            or Offer.objects.filter(merchant=merchant).exists()
        ):
            if options["if_empty"]:
                self.stdout.write(f'"{merchant.name}" has campaigns or offers; nothing to do.')
                return
            raise CommandError(
                f'"{merchant.name}" has campaigns or offers already; use --if-empty to keep them.'
            )
        user = get_user_model().objects.filter(username="demo").first()
        made = seed_campaigns(merchant=merchant, user=user)
        for campaign in made:
            self.stdout.write(f"  {campaign.name}: {campaign.get_status_display().lower()}")
        self.stdout.write(self.style.SUCCESS(f'Campaigns and offers for "{merchant.name}".'))
