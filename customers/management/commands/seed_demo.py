"""`seed_demo`: the demo merchants and login that `make run` serves.

    python manage.py seed_demo [--if-empty] [--customers 5000] [--seed 1]

Builds "Green Leaf Dispensary" (slug `demo`, America/Toronto, CAD: 3 branches, ~300
products, N customers with three years of purchases) and the small "Northside Goods" café
(slug `northside`, Europe/London, GBP), with the user `demo` as owner of the first and
manager of the second (and staff + superuser, so the admin is part of the demo). The data
comes from the same process as `generate_dataset` (`customers.synthetic`).
"""

from __future__ import annotations

import time
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from customers.models import LineItem, Merchant, Role, StaffMembership, TierRule
from customers.scores.service import scores_compute
from customers.synthetic import SyntheticDataset
from customers.synthetic_writers import write_to_database

#: The demo's tier rules: lifetime points, as the generator assigned the imported tiers.
DEMO_TIER_POINTS = {"Bronze": 0, "Silver": 500, "Gold": 2000, "Platinum": 6000}

DEMO_USERNAME = "demo"
DEMO_PASSWORD = "demo-portal-2026"  # noqa: S105 (the published demo login, see README)
DEMO_SLUG = "demo"
NORTHSIDE_SLUG = "northside"

ERROR_DEMO_EXISTS = (
    "The demo merchant already exists. Use --if-empty to keep it, or --replace to delete "
    "both demo merchants and build them again."
)


class Command(BaseCommand):
    help = "Create the demo merchants, their synthetic customers and the demo login."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--if-empty",
            action="store_true",
            help="do nothing when the demo merchant already exists (what `make run` uses)",
        )
        parser.add_argument(
            "--replace",
            action="store_true",
            help="delete the demo merchants (and all their data) first",
        )
        parser.add_argument("--customers", type=int, default=5000, help="default 5000")
        parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["customers"] < 0:
            raise CommandError("--customers must be >= 0")
        exists = Merchant.objects.filter(slug=DEMO_SLUG).exists()
        if exists and options["if_empty"]:
            self.stdout.write("The demo merchant exists already; nothing to do.")
            self._print_login()
            return
        if exists and not options["replace"]:
            raise CommandError(ERROR_DEMO_EXISTS)

        started = time.perf_counter()
        with transaction.atomic():
            if options["replace"]:
                slugs = [DEMO_SLUG, NORTHSIDE_SLUG]
                # Line items first: their PROTECT on products would stop the merchant's
                # cascade (Django checks PROTECT before seeing the items go too).
                LineItem.objects.filter(transaction__merchant__slug__in=slugs).delete()
                Merchant.objects.filter(slug__in=slugs).delete()
            demo = Merchant.objects.create(
                slug=DEMO_SLUG,
                name="Green Leaf Dispensary",
                time_zone="America/Toronto",
                currency="CAD",
            )
            demo_counts = write_to_database(
                SyntheticDataset(
                    customers=options["customers"],
                    seed=options["seed"],
                    time_zone=demo.time_zone,
                    profile="dispensary",
                    branch_count=3,
                ),
                demo,
            )
            northside, _ = Merchant.objects.get_or_create(
                slug=NORTHSIDE_SLUG,
                defaults={
                    "name": "Northside Goods",
                    "time_zone": "Europe/London",
                    "currency": "GBP",
                },
            )
            northside_counts: dict[str, int] | None = None
            if not northside.customers.exists():
                northside_counts = write_to_database(
                    SyntheticDataset(
                        customers=max(options["customers"] // 20, 50),
                        seed=options["seed"] + 1,
                        time_zone=northside.time_zone,
                        profile="cafe",
                        branch_count=2,
                    ),
                    northside,
                )
            # The demo assigns its tiers by rules: the generator's lifetime-points thresholds.
            for tier in demo.tiers.all():
                TierRule.objects.create(
                    merchant=demo,
                    tier=tier,
                    metric="points",
                    period="lifetime",
                    threshold=DEMO_TIER_POINTS.get(tier.name, 0),
                )
            user = self._demo_user()
            for merchant, role in ((demo, Role.OWNER), (northside, Role.MANAGER)):
                StaffMembership.objects.update_or_create(
                    user=user, merchant=merchant, defaults={"role": role}
                )

        for merchant in (demo, northside):
            scores_compute(merchant=merchant)
        elapsed = time.perf_counter() - started
        self.stdout.write(self.style.SUCCESS(f"Demo data created in {elapsed:.1f} s."))
        self._print_counts(demo, demo_counts)
        if northside_counts is not None:
            self._print_counts(northside, northside_counts)
        else:
            self.stdout.write(f'"{northside.name}" ({northside.slug}) kept as it was.')
        self._print_login()

    @staticmethod
    def _demo_user() -> Any:
        """The demo login: staff and superuser, so the Django admin is reachable too."""
        user, _ = get_user_model().objects.get_or_create(
            username=DEMO_USERNAME, defaults={"email": "demo@example.com"}
        )
        user.is_staff = True
        user.is_superuser = True
        user.is_active = True
        user.set_password(DEMO_PASSWORD)
        user.save()
        return user

    def _print_counts(self, merchant: Merchant, counts: dict[str, int]) -> None:
        self.stdout.write(
            f'"{merchant.name}" ({merchant.slug}, {merchant.time_zone}, {merchant.currency}): '
            f"{counts['branches']} branches, {counts['products']} products, "
            f"{counts['customers']} customers, {counts['transactions']} transactions, "
            f"{counts['line_items']} line items, {counts['redemptions']} redemptions."
        )

    def _print_login(self) -> None:
        self.stdout.write(
            f"Log in as {DEMO_USERNAME} / {DEMO_PASSWORD} "
            f"(owner of {DEMO_SLUG}, manager of {NORTHSIDE_SLUG}, admin at /admin/)."
        )
