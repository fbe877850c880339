"""Offers and content blocks aimed at segments: who sees what (and why), unique codes handed
out atomically, and segments in use that cannot be removed."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from campaigns.models import (
    CodeMode,
    ContentBlock,
    ContentSegment,
    CouponCode,
    Offer,
    OfferSegment,
)
from campaigns.selectors import customer_sees, visible_content, visible_offers
from campaigns.services import OfferError, offer_code_assign
from customers.models import Redemption
from segments import services
from segments.models import SegmentKind
from tests.factories import (
    DEMO_PASSWORD,
    CustomerFactory,
    MerchantFactory,
    StaffMembershipFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

TODAY = dt.date(2026, 6, 15)


@pytest.fixture
def merchant():
    return MerchantFactory(slug="acme", time_zone="America/Toronto")


def manual(merchant, name, *customers):
    segment = services.segment_create(merchant=merchant, name=name, kind=SegmentKind.MANUAL)
    if customers:
        services.segment_members_add(segment=segment, customers=[c.pk for c in customers])
    return segment


def offer(merchant, name, include=(), exclude=(), **fields):
    made = Offer.objects.create(merchant=merchant, name=name, **fields)
    for segment in include:
        OfferSegment.objects.create(offer=made, segment=segment)
    for segment in exclude:
        OfferSegment.objects.create(offer=made, segment=segment, exclude=True)
    return made


def test_an_offer_is_seen_by_members_of_an_included_segment_unless_excluded(merchant):
    # given: VIPs see "Free preroll" unless they are also on the blocklist
    vip, blocked, other = (CustomerFactory(merchant=merchant) for _ in range(3))
    vips = manual(merchant, "VIPs", vip, blocked)
    blocklist = manual(merchant, "Blocklist", blocked)
    offer(merchant, "Free preroll", include=[vips], exclude=[blocklist])

    # then
    assert [o.name for o in visible_offers(customer=vip, today=TODAY)] == ["Free preroll"]
    assert list(visible_offers(customer=blocked, today=TODAY)) == []
    assert list(visible_offers(customer=other, today=TODAY)) == []


def test_why_names_the_first_included_segment_the_customer_is_in(merchant):
    customer = CustomerFactory(merchant=merchant)
    zeta, alpha = manual(merchant, "Zeta fans", customer), manual(merchant, "Alpha fans", customer)
    manual(merchant, "Nobody")
    offer(merchant, "Double points", include=[zeta, alpha])

    (seen,) = visible_offers(customer=customer, today=TODAY)

    assert seen.because == "Alpha fans"


def test_inactive_and_out_of_date_offers_are_not_seen(merchant):
    customer = CustomerFactory(merchant=merchant)
    members = manual(merchant, "Members", customer)
    offer(merchant, "Off", include=[members], is_active=False)
    offer(merchant, "Ended", include=[members], valid_until=TODAY - dt.timedelta(days=1))
    offer(merchant, "Not yet", include=[members], valid_from=TODAY + dt.timedelta(days=1))
    offer(merchant, "Last day", include=[members], valid_until=TODAY)
    offer(merchant, "First day", include=[members], valid_from=TODAY)

    seen = [o.name for o in visible_offers(customer=customer, today=TODAY)]

    assert seen == ["First day", "Last day"]


def test_today_is_the_merchants_date(merchant, monkeypatch):
    # given: 02:00 UTC on 16 June is still 15 June in Toronto
    monkeypatch.setattr(timezone, "now", lambda: dt.datetime(2026, 6, 16, 2, 0, tzinfo=dt.UTC))
    customer = CustomerFactory(merchant=merchant)
    members = manual(merchant, "Members", customer)
    offer(merchant, "Ends the 15th", include=[members], valid_until=dt.date(2026, 6, 15))

    assert [o.name for o in visible_offers(customer=customer)] == ["Ends the 15th"]


def test_what_a_customer_sees_is_one_query_each(merchant, django_assert_num_queries):
    customer = CustomerFactory(merchant=merchant)
    members = manual(merchant, "Members", customer)
    for i in range(5):
        offer(merchant, f"Offer {i}", include=[members])

    with django_assert_num_queries(1):
        assert len(list(visible_offers(customer=customer, today=TODAY))) == 5


def test_content_blocks_follow_the_same_targeting(merchant):
    member, outsider = CustomerFactory(merchant=merchant), CustomerFactory(merchant=merchant)
    members = manual(merchant, "Members", member)
    block = ContentBlock.objects.create(merchant=merchant, title="Member night")
    ContentSegment.objects.create(block=block, segment=members)

    assert [(b.title, b.because) for b in visible_content(customer=member, today=TODAY)] == [
        ("Member night", "Members")
    ]
    assert list(visible_content(customer=outsider, today=TODAY)) == []


def test_another_merchants_offers_are_never_seen(merchant):
    customer = CustomerFactory(merchant=merchant)
    rival = MerchantFactory(slug="rival")
    rival_customer = CustomerFactory(merchant=rival)
    offer(rival, "Rival deal", include=[manual(rival, "Theirs", rival_customer)])
    offer(merchant, "Ours", include=[manual(merchant, "Ours", customer)])

    assert [o.name for o in visible_offers(customer=customer, today=TODAY)] == ["Ours"]


# --- unique codes -----------------------------------------------------------------------------


def pool(merchant, *codes):
    made = offer(merchant, "Coupons", code_mode=CodeMode.UNIQUE)
    CouponCode.objects.bulk_create(CouponCode(offer=made, code=c) for c in codes)
    return made


def test_each_customer_gets_their_own_code_and_keeps_it(merchant):
    coupons = pool(merchant, "AAA", "BBB")
    ann, bob = CustomerFactory(merchant=merchant), CustomerFactory(merchant=merchant)

    first = offer_code_assign(offer=coupons, customer=ann)
    again = offer_code_assign(offer=coupons, customer=ann)
    second = offer_code_assign(offer=coupons, customer=bob)

    assert (first.code, again.code, second.code) == ("AAA", "AAA", "BBB")
    assert first.assigned_at is not None


def test_an_empty_pool_says_so_and_gives_nothing(merchant):
    coupons = pool(merchant, "ONLY")
    offer_code_assign(offer=coupons, customer=CustomerFactory(merchant=merchant))
    late = CustomerFactory(merchant=merchant)

    with pytest.raises(OfferError, match='Every code of the offer "Coupons" is taken'):
        offer_code_assign(offer=coupons, customer=late)
    assert not CouponCode.objects.filter(customer=late).exists()


def test_codes_only_from_a_unique_pool_and_for_the_offers_merchant(merchant):
    shared = offer(merchant, "Shared", code_mode=CodeMode.SHARED, shared_code="SPRING")
    coupons = pool(merchant, "AAA")
    stranger = CustomerFactory(merchant=MerchantFactory(slug="rival"))

    with pytest.raises(OfferError, match="no pool of unique codes"):
        offer_code_assign(offer=shared, customer=CustomerFactory(merchant=merchant))
    with pytest.raises(OfferError, match="not a customer of the offer"):
        offer_code_assign(offer=coupons, customer=stranger)


def test_the_database_refuses_two_codes_of_one_offer_for_one_customer(merchant):
    pool(merchant, "AAA", "BBB")
    ann = CustomerFactory(merchant=merchant)
    CouponCode.objects.filter(code="AAA").update(customer=ann)

    with pytest.raises(IntegrityError), transaction.atomic():
        CouponCode.objects.filter(code="BBB").update(customer=ann)


# --- segments in use --------------------------------------------------------------------------


def test_a_segment_an_offer_uses_cannot_be_removed(merchant):
    members = manual(merchant, "Members")
    offer(merchant, "Free preroll", include=[members])

    with pytest.raises(services.SegmentInUseError) as refused:
        services.segments_remove(segments=[members])

    assert "the offer “Free preroll”" in str(refused.value)
    assert members.__class__.objects.filter(pk=members.pk).exists()


def test_the_removal_page_names_the_offers_and_content_that_use_it(client, merchant):
    members = manual(merchant, "Members")
    offer(merchant, "Free preroll", exclude=[members])
    block = ContentBlock.objects.create(merchant=merchant, title="Member night")
    ContentSegment.objects.create(block=block, segment=members)
    user = UserFactory(username="owner")
    StaffMembershipFactory(user=user, merchant=merchant, role="owner")
    assert client.login(username="owner", password=DEMO_PASSWORD)

    page = client.get(reverse("segments:remove", args=[members.pk])).content.decode()

    assert "the offer “Free preroll”" in page
    assert "the content block “Member night”" in page
    assert 'id="confirm-blocked"' in page


def test_a_merchant_goes_with_its_offers_and_segments(merchant):
    members = manual(merchant, "Members", CustomerFactory(merchant=merchant))
    offer(merchant, "Free preroll", include=[members])

    merchant.delete()

    assert not Offer.objects.exists() and not OfferSegment.objects.exists()


# --- the customer page ------------------------------------------------------------------------


@pytest.fixture
def owner_client(client, merchant):
    user = UserFactory(username="owner")
    StaffMembershipFactory(user=user, merchant=merchant, role="owner")
    assert client.login(username="owner", password=DEMO_PASSWORD)
    return client


def test_the_customer_page_lists_what_the_customer_sees_and_why(owner_client, merchant):
    # given: a VIP with a unique code, a shared-code offer, a block, and an excluded offer
    vip = CustomerFactory(merchant=merchant)
    vips = manual(merchant, "VIPs", vip)
    staff = manual(merchant, "Staff", vip)
    coupons = offer(merchant, "Birthday coupon", include=[vips], code_mode=CodeMode.UNIQUE)
    CouponCode.objects.create(offer=coupons, code="BDAY-1")
    offer_code_assign(offer=coupons, customer=vip)
    offer(merchant, "Spring sale", include=[vips], code_mode=CodeMode.SHARED, shared_code="SPRING")
    offer(merchant, "Not for staff", include=[vips], exclude=[staff])
    block = ContentBlock.objects.create(merchant=merchant, title="Member night")
    ContentSegment.objects.create(block=block, segment=vips)

    # when
    page = owner_client.get(reverse("campaigns:customer_visible", args=[vip.pk]))
    detail = owner_client.get(reverse("customers:detail", args=[vip.pk])).content.decode()

    # then
    html = page.content.decode()
    assert page.context["offers"] == [
        (Offer.objects.get(name="Birthday coupon"), "BDAY-1"),
        (Offer.objects.get(name="Spring sale"), None),
    ]
    assert "<code>BDAY-1</code>" in html and "<code>SPRING</code>" in html
    assert "because they are in “VIPs”" in html
    assert "Not for staff" not in html
    assert "Member night" in html
    assert reverse("campaigns:customer_visible", args=[vip.pk]) in detail


def test_a_customer_who_sees_nothing_is_told_so(owner_client, merchant):
    customer = CustomerFactory(merchant=merchant)

    page = owner_client.get(reverse("campaigns:customer_visible", args=[customer.pk]))

    assert 'id="sees-nothing"' in page.content.decode()


def test_another_merchants_customer_is_not_found(owner_client, merchant):
    stranger = CustomerFactory(merchant=MerchantFactory(slug="rival"))

    page = owner_client.get(reverse("campaigns:customer_visible", args=[stranger.pk]))

    assert page.status_code == 404


# --- targeting rules (the admin's forms run these) ---------------------------------------------


def test_an_offer_can_aim_only_at_its_merchants_active_segments(merchant):
    made = offer(merchant, "Free preroll")
    theirs = manual(MerchantFactory(slug="rival"), "Theirs")
    asleep = manual(merchant, "Asleep")
    services.segments_set_active(segments=[asleep], active=False)
    asleep.refresh_from_db()

    with pytest.raises(ValidationError, match="belongs to another merchant"):
        OfferSegment(offer=made, segment=theirs).full_clean()
    with pytest.raises(ValidationError, match='"Asleep" is inactive'):
        OfferSegment(offer=made, segment=asleep).full_clean()
    # keeping an inactive segment's members away is allowed
    OfferSegment(offer=made, segment=asleep, exclude=True).full_clean()
    block = ContentBlock.objects.create(merchant=merchant, title="Night")
    with pytest.raises(ValidationError, match="belongs to another merchant"):
        ContentSegment(block=block, segment=theirs).full_clean()


# --- the offers page --------------------------------------------------------------------------


def test_the_offers_page_shows_targeting_status_codes_and_redemptions(owner_client, merchant):
    # given: a running coupon pool with 1 of 3 codes given, redeemed twice (by its name and by
    # a code), an ended offer, and another merchant's offer
    ann = CustomerFactory(merchant=merchant)
    vips, staff = manual(merchant, "VIPs", ann), manual(merchant, "Staff")
    coupons = offer(merchant, "Birthday coupon", include=[vips], exclude=[staff])
    coupons.code_mode = CodeMode.UNIQUE
    coupons.save()
    CouponCode.objects.bulk_create(CouponCode(offer=coupons, code=c) for c in ("B1", "B2", "B3"))
    offer_code_assign(offer=coupons, customer=ann)
    when = timezone.now()
    for i, reward in enumerate(("Birthday coupon", "B1", "Something else")):
        Redemption.objects.create(
            merchant=merchant, customer=ann, external_id=f"R{i}", reward=reward, redeemed_at=when
        )
    offer(merchant, "Old deal", include=[vips], valid_until=dt.date(2020, 1, 31))
    offer(MerchantFactory(slug="rival"), "Rival deal")

    # when
    page = owner_client.get(reverse("campaigns:offers"))

    # then
    rows = {row.offer.name: row for row in page.context["offers"]}
    assert set(rows) == {"Birthday coupon", "Old deal"}
    coupon = rows["Birthday coupon"]
    assert (coupon.codes_given, coupon.codes_free, coupon.redemptions) == (1, 2, 2)
    assert (coupon.included, coupon.excluded, coupon.status) == ([vips], [staff], "Running")
    assert rows["Old deal"].status == "Ended 31 Jan 2020"
    assert "Rival deal" not in page.content.decode()


def test_the_offers_page_without_offers_says_so(owner_client):
    html = owner_client.get(reverse("campaigns:offers")).content.decode()

    assert 'id="no-offers"' in html and 'id="no-content"' in html


def test_what_a_customer_sees_is_answered_in_one_query(merchant, django_assert_num_queries):
    # given: a shared-code offer, a pool offer where the customer holds a code, a plain
    # offer, a content block, and an offer the customer is kept from
    customer = CustomerFactory(merchant=merchant)
    vips = manual(merchant, "VIPs", customer)
    offer(merchant, "Shared", include=[vips], code_mode=CodeMode.SHARED, shared_code="SPRING")
    pool = offer(merchant, "Pool", include=[vips], code_mode=CodeMode.UNIQUE)
    CouponCode.objects.create(offer=pool, code="P-1", customer=customer)
    CouponCode.objects.create(offer=pool, code="P-2")
    offer(merchant, "Plain", include=[vips])
    offer(merchant, "Hidden", include=[vips], exclude=[manual(merchant, "Blocked", customer)])
    block = ContentBlock.objects.create(merchant=merchant, title="Member night")
    ContentSegment.objects.create(block=block, segment=vips)

    # when
    with django_assert_num_queries(1):
        seen = customer_sees(customer=customer, today=TODAY)

    # then: offers first, by name, each with the customer's code and why
    assert [(s.kind, s.name, s.code, s.because) for s in seen] == [
        ("offer", "Plain", "", "VIPs"),
        ("offer", "Pool", "P-1", "VIPs"),
        ("offer", "Shared", "SPRING", "VIPs"),
        ("content", "Member night", "", "VIPs"),
    ]
