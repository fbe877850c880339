"""factory_boy factories for the whole data model. Tests build their data with these."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.utils import timezone

from customers import models

DEMO_PASSWORD = "test-pass-1234"


class MerchantFactory(factory.django.DjangoModelFactory[models.Merchant]):
    class Meta:
        model = models.Merchant
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"merchant-{n}")
    name = factory.LazyAttribute(lambda o: o.slug.replace("-", " ").title())
    time_zone = "America/Toronto"
    currency = "CAD"


class UserFactory(factory.django.DjangoModelFactory[User]):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.com")
    password = factory.PostGenerationMethodCall("set_password", DEMO_PASSWORD)

    @factory.post_generation
    def saved(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class StaffMembershipFactory(factory.django.DjangoModelFactory[models.StaffMembership]):
    class Meta:
        model = models.StaffMembership

    user = factory.SubFactory(UserFactory)
    merchant = factory.SubFactory(MerchantFactory)
    role = models.Role.OWNER


class BranchFactory(factory.django.DjangoModelFactory[models.Branch]):
    class Meta:
        model = models.Branch

    merchant = factory.SubFactory(MerchantFactory)
    code = factory.Sequence(lambda n: f"B{n:03d}")
    name = factory.LazyAttribute(lambda o: f"Branch {o.code}")


class TagFactory(factory.django.DjangoModelFactory[models.Tag]):
    class Meta:
        model = models.Tag

    merchant = factory.SubFactory(MerchantFactory)
    name = factory.Sequence(lambda n: f"tag-{n}")


class TierFactory(factory.django.DjangoModelFactory[models.Tier]):
    class Meta:
        model = models.Tier

    merchant = factory.SubFactory(MerchantFactory)
    name = factory.Sequence(lambda n: f"Tier {n}")
    rank = factory.Sequence(lambda n: n)


class CustomerFactory(factory.django.DjangoModelFactory[models.Customer]):
    class Meta:
        model = models.Customer
        skip_postgeneration_save = True

    merchant = factory.SubFactory(MerchantFactory)
    external_id = factory.Sequence(lambda n: f"C{n:06d}")
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    email = factory.LazyAttribute(lambda o: f"{o.external_id.lower()}@example.com")
    phone = factory.Sequence(lambda n: f"+1416555{n % 10000:04d}")
    gender = models.Gender.UNSPECIFIED
    joined_at = factory.LazyFunction(lambda: timezone.now() - dt.timedelta(days=400))

    class Params:
        opted_in = factory.Trait(email_opt_in=True, sms_opt_in=True, push_opt_in=True)

    @factory.post_generation
    def tags(obj, create, extracted, **kwargs):
        if create and extracted:
            obj.tags.add(*extracted)


class ProductFactory(factory.django.DjangoModelFactory[models.Product]):
    class Meta:
        model = models.Product

    merchant = factory.SubFactory(MerchantFactory)
    sku = factory.Sequence(lambda n: f"SKU-{n:05d}")
    name = factory.Sequence(lambda n: f"Product {n}")
    product_type = "preroll"
    brand = "Phat Panda"
    category = "flower"
    price = Decimal("12.50")


class TransactionFactory(factory.django.DjangoModelFactory[models.Transaction]):
    class Meta:
        model = models.Transaction

    customer = factory.SubFactory(CustomerFactory)
    merchant = factory.SelfAttribute("customer.merchant")
    external_id = factory.Sequence(lambda n: f"T{n:07d}")
    occurred_at = factory.LazyFunction(lambda: timezone.now() - dt.timedelta(days=10))
    kind = models.TransactionKind.PURCHASE
    total = Decimal("25.00")

    class Params:
        refund = factory.Trait(kind=models.TransactionKind.REFUND)


class LineItemFactory(factory.django.DjangoModelFactory[models.LineItem]):
    class Meta:
        model = models.LineItem

    transaction = factory.SubFactory(TransactionFactory)
    product = factory.SubFactory(
        ProductFactory, merchant=factory.SelfAttribute("..transaction.merchant")
    )
    quantity = 1
    amount = Decimal("12.50")


class RedemptionFactory(factory.django.DjangoModelFactory[models.Redemption]):
    class Meta:
        model = models.Redemption

    customer = factory.SubFactory(CustomerFactory)
    merchant = factory.SelfAttribute("customer.merchant")
    external_id = factory.Sequence(lambda n: f"R{n:07d}")
    reward = "Free coffee"
    points = 100
    redeemed_at = factory.LazyFunction(lambda: timezone.now() - dt.timedelta(days=5))
