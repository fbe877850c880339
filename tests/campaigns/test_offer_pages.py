"""The portal's offer and content pages: the services that save offers and content blocks
with their targeting and fill an offer's pool of codes (every refusal, all or nothing), and
the pages themselves (round trips, tenancy, roles, what each role is offered)."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from campaigns import offer_forms, selectors
from campaigns.models import (
    CodeMode,
    ContentBlock,
    ContentSegment,
    CouponCode,
    Offer,
    OfferKind,
    OfferSegment,
)
from campaigns.services import (
    OfferError,
    content_block_save,
    offer_code_assign,
    offer_codes_generate,
    offer_codes_upload,
    offer_save,
)
from campaigns.services import offers as offer_services
from customers.models import Redemption
from customers.portal.permissions import Action, denied_message
from segments import services as segment_services
from segments.models import SegmentKind
from tests.factories import (
    DEMO_PASSWORD,
    CustomerFactory,
    MerchantFactory,
    StaffMembershipFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

#: 15 June 2026, 12:00 in Toronto (the merchant's time zone).
NOW = dt.datetime(2026, 6, 15, 16, 0, tzinfo=dt.UTC)
TODAY = dt.date(2026, 6, 15)


@pytest.fixture(autouse=True)
def _pinned_time(monkeypatch):
    monkeypatch.setattr(timezone, "now", lambda: NOW)


def manual(merchant, name, *customers, active=True):
    segment = segment_services.segment_create(merchant=merchant, name=name, kind=SegmentKind.MANUAL)
    if customers:
        segment_services.segment_members_add(segment=segment, customers=[c.pk for c in customers])
    if not active:
        segment_services.segments_set_active(segments=[segment], active=False)
        segment.refresh_from_db()
    return segment


@pytest.fixture
def vips(merchant):
    return manual(merchant, "VIPs")


@pytest.fixture
def staff_members(merchant):
    return manual(merchant, "Staff members")


def new_offer(merchant, include, name="Free preroll", **fields):
    return offer_save(merchant=merchant, name=name, include=include, **fields)


def pool(merchant, include, *codes, name="Birthday coupon"):
    made = new_offer(merchant, include, name=name, code_mode=CodeMode.UNIQUE)
    CouponCode.objects.bulk_create(CouponCode(offer=made, code=c) for c in codes)
    return made


def refusal(call, **kwargs) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as refused:
        call(**kwargs)
    return refused.value.message_dict


# -- offer_save ---------------------------------------------------------------------------------


def test_an_offer_is_created_with_its_targeting_and_author(merchant, vips, staff_members):
    # given
    user = UserFactory(username="maker")

    # when
    offer = offer_save(
        merchant=merchant,
        name="  Free preroll ",
        kind=OfferKind.COUPON,
        code_mode=CodeMode.SHARED,
        shared_code="SPRING26",
        valid_from=TODAY,
        valid_until=TODAY + dt.timedelta(days=30),
        include=[vips],
        exclude=[staff_members],
        user=user,
    )

    # then
    offer.refresh_from_db()
    assert (offer.name, offer.kind, offer.shared_code, offer.created_by) == (
        "Free preroll",
        OfferKind.COUPON,
        "SPRING26",
        user,
    )
    links = {(link.segment.name, link.exclude) for link in offer.targeting.all()}
    assert links == {("VIPs", False), ("Staff members", True)}


def test_saving_an_offer_again_replaces_its_targeting(merchant, vips, staff_members):
    offer = new_offer(merchant, [vips], exclude=[staff_members])
    locals_ = manual(merchant, "Locals")

    offer_save(merchant=merchant, offer=offer, name="Renamed", include=[locals_, vips])

    offer.refresh_from_db()
    assert offer.name == "Renamed"
    assert sorted(
        (link.segment.name, link.exclude) for link in OfferSegment.objects.filter(offer=offer)
    ) == [("Locals", False), ("VIPs", False)]


def test_a_shared_code_is_kept_only_for_a_shared_code_offer(merchant, vips):
    offer = new_offer(merchant, [vips], code_mode=CodeMode.NONE, shared_code="IGNORED")

    assert Offer.objects.get(pk=offer.pk).shared_code == ""


@pytest.mark.parametrize(
    ("fields", "key", "message"),
    [
        ({"name": "  "}, "name", offer_services.NAME_REQUIRED),
        (
            {"valid_from": TODAY, "valid_until": TODAY - dt.timedelta(days=1)},
            "valid_until",
            "The last day cannot be before the first day (2026-06-15).",
        ),
        ({"code_mode": CodeMode.SHARED}, "shared_code", offer_services.SHARED_CODE_REQUIRED),
        (
            {"code_mode": CodeMode.SHARED, "shared_code": "SPRING 26"},
            "shared_code",
            offer_services.SHARED_CODE_SPACES,
        ),
        ({"include": []}, "include", offer_services.NO_INCLUDED_SEGMENT),
    ],
    ids=["blank-name", "dates-reversed", "no-shared-code", "shared-code-space", "no-segment"],
)
def test_each_refusal_of_an_offer_names_its_field(merchant, vips, fields, key, message):
    kwargs = {"merchant": merchant, "name": "Free preroll", "include": [vips], **fields}

    errors = refusal(offer_save, **kwargs)

    assert errors == {key: [message]}
    assert not Offer.objects.exists()


def test_an_offer_name_is_unique_per_merchant_in_any_case(merchant, vips):
    new_offer(merchant, [vips], name="Free preroll")
    mine = new_offer(merchant, [vips], name="Double points")
    new_offer(MerchantFactory(slug="rival"), [manual(MerchantFactory(slug="rival"), "Theirs")])

    errors = refusal(offer_save, merchant=merchant, name="FREE PREROLL", include=[vips])
    renamed = refusal(
        offer_save, merchant=merchant, offer=mine, name="free preroll", include=[vips]
    )

    assert errors == {
        "name": ['There is already an offer named "FREE PREROLL": choose another name.']
    }
    assert renamed["name"] == [
        'There is already an offer named "free preroll": choose another name.'
    ]
    # its own name, and a name another merchant uses, are fine
    offer_save(merchant=merchant, offer=mine, name="Double points", include=[vips])
    new_offer(merchant, [vips], name="Free preroll (rival has one too)")


def test_a_segment_cannot_be_both_aimed_at_and_kept_from(merchant, vips):
    errors = refusal(offer_save, merchant=merchant, name="X", include=[vips], exclude=[vips])

    assert errors == {"exclude": ["VIPs: a segment cannot be both aimed at and kept from."]}


def test_another_merchants_segment_is_refused_and_nothing_is_written(merchant, vips):
    theirs = manual(MerchantFactory(slug="rival"), "Theirs")

    included = refusal(offer_save, merchant=merchant, name="X", include=[vips, theirs])
    excluded = refusal(offer_save, merchant=merchant, name="X", include=[vips], exclude=[theirs])

    assert included == {"include": ["This segment belongs to another merchant."]}
    assert excluded == {"exclude": ["This segment belongs to another merchant."]}
    assert not Offer.objects.exists() and not OfferSegment.objects.exists()


def test_an_inactive_segment_may_be_kept_from_but_not_aimed_at(merchant, vips):
    asleep = manual(merchant, "Asleep", active=False)

    errors = refusal(offer_save, merchant=merchant, name="X", include=[asleep])
    kept = new_offer(merchant, [vips], exclude=[asleep])

    assert errors == {
        "include": [
            '"Asleep" is inactive (not refreshed): activate it before aiming anything at it.'
        ]
    }
    assert kept.targeting.get(segment=asleep).exclude


def test_a_refused_edit_leaves_the_offer_as_it_was(merchant, vips):
    offer = new_offer(merchant, [vips], name="Free preroll")
    asleep = manual(merchant, "Asleep", active=False)

    refusal(offer_save, merchant=merchant, offer=offer, name="Renamed", include=[asleep])

    offer.refresh_from_db()
    assert offer.name == "Free preroll"
    assert [link.segment for link in offer.targeting.all()] == [vips]


def test_an_offer_with_given_codes_keeps_its_pool(merchant, vips):
    offer = pool(merchant, [vips], "AAA", "BBB")
    offer_code_assign(offer=offer, customer=CustomerFactory(merchant=merchant))

    errors = refusal(
        offer_save,
        merchant=merchant,
        offer=offer,
        name=offer.name,
        code_mode=CodeMode.NONE,
        include=[vips],
    )

    assert errors == {"code_mode": [offer_services.CODES_GIVEN_KEEP_MODE.format(count="1")]}
    assert Offer.objects.get(pk=offer.pk).code_mode == CodeMode.UNIQUE


def test_another_merchants_offer_cannot_be_saved_as_ours(merchant, vips):
    rival = MerchantFactory(slug="rival")
    theirs = new_offer(rival, [manual(rival, "Theirs")], name="Rival deal")

    with pytest.raises(OfferError, match="belongs to another merchant"):
        offer_save(merchant=merchant, offer=theirs, name="Mine now", include=[vips])


# -- content_block_save -------------------------------------------------------------------------


def test_a_content_block_is_created_and_changed_with_its_targeting(merchant, vips, staff_members):
    block = content_block_save(
        merchant=merchant,
        title="Member night",
        body="Thursday, 7 pm.",
        link="https://example.com/night",
        include=[vips],
        exclude=[staff_members],
    )

    content_block_save(merchant=merchant, block=block, title="Member night 2", include=[vips])

    block.refresh_from_db()
    assert (block.title, block.link) == ("Member night 2", "")
    assert [
        (link.segment, link.exclude) for link in ContentSegment.objects.filter(block=block)
    ] == [(vips, False)]


def test_a_content_block_is_refused_like_an_offer(merchant, vips):
    asleep = manual(merchant, "Asleep", active=False)
    theirs = manual(MerchantFactory(slug="rival"), "Theirs")

    blank = refusal(content_block_save, merchant=merchant, title=" ", include=[vips])
    nobody = refusal(content_block_save, merchant=merchant, title="T", include=[])
    both = refusal(content_block_save, merchant=merchant, title="T", include=[vips], exclude=[vips])
    reversed_ = refusal(
        content_block_save,
        merchant=merchant,
        title="T",
        include=[vips],
        valid_from=TODAY,
        valid_until=TODAY - dt.timedelta(days=1),
    )
    inactive = refusal(content_block_save, merchant=merchant, title="T", include=[asleep])
    other = refusal(content_block_save, merchant=merchant, title="T", include=[theirs])
    bad_link = refusal(
        content_block_save, merchant=merchant, title="T", link="nope", include=[vips]
    )

    assert blank == {"title": [offer_services.TITLE_REQUIRED]}
    assert nobody == {"include": [offer_services.NO_INCLUDED_SEGMENT]}
    assert list(both) == ["exclude"]
    assert list(reversed_) == ["valid_until"]
    assert "inactive" in inactive["include"][0]
    assert other == {"include": ["This segment belongs to another merchant."]}
    assert list(bad_link) == ["link"]
    assert not ContentBlock.objects.exists() and not ContentSegment.objects.exists()


# -- generating codes -----------------------------------------------------------------------------


def test_generated_codes_are_new_unique_and_as_many_as_asked(merchant, vips, monkeypatch):
    offer = pool(merchant, [vips], "OLD-1")
    inserts = []
    bulk_create = CouponCode.objects.bulk_create
    monkeypatch.setattr(
        CouponCode.objects, "bulk_create", lambda objs: inserts.append(1) or bulk_create(objs)
    )

    with CaptureQueriesContext(connection) as queries:
        codes = offer_codes_generate(offer=offer, count=500, prefix="BDAY-", length=8)

    assert len(codes) == len(set(codes)) == 500
    assert CouponCode.objects.filter(offer=offer).count() == 501
    for code in codes:
        assert code.startswith("BDAY-") and len(code) == 13
        assert set(code[5:]) <= set(offer_services.CODE_ALPHABET)
        assert not set(code[5:]) & set("0O1I")
    # one bulk insert (SQLite splits it into statements of ~250 rows)
    assert inserts == [1]
    assert len([q for q in queries.captured_queries if q["sql"].startswith("INSERT")]) <= 3


def test_generation_draws_again_when_a_code_exists(merchant, vips, monkeypatch):
    # given: the first draw repeats a code of the pool, the second one a code just drawn
    offer = pool(merchant, [vips], "AAAAAA")
    draws = iter("AAAAAABBBBBBBBBBBBCCCCCC")
    monkeypatch.setattr(offer_services.secrets, "choice", lambda alphabet: next(draws))

    # when
    codes = offer_codes_generate(offer=offer, count=2, length=6)

    # then
    assert codes == ["BBBBBB", "CCCCCC"]
    assert sorted(CouponCode.objects.values_list("code", flat=True)) == [
        "AAAAAA",
        "BBBBBB",
        "CCCCCC",
    ]


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"count": 0}, "count"),
        ({"count": 100_001}, "count"),
        ({"count": 5, "length": 5}, "length"),
        ({"count": 5, "length": 33}, "length"),
        ({"count": 5, "prefix": "HAS SPACE"}, "prefix"),
        ({"count": 5, "prefix": "X" * 21}, "prefix"),
        ({"count": 5, "prefix": "Ünï"}, "prefix"),
    ],
    ids=[
        "none",
        "too-many",
        "too-short",
        "too-long",
        "prefix-space",
        "prefix-long",
        "prefix-chars",
    ],
)
def test_generation_refuses_bad_requests_and_adds_nothing(merchant, vips, kwargs, key):
    offer = pool(merchant, [vips])

    errors = refusal(offer_codes_generate, offer=offer, **kwargs)

    assert list(errors) == [key]
    assert not CouponCode.objects.exists()


def test_codes_only_for_a_pool_of_unique_codes(merchant, vips):
    shared = new_offer(merchant, [vips], code_mode=CodeMode.SHARED, shared_code="SPRING")

    with pytest.raises(OfferError, match="no pool of unique codes"):
        offer_codes_generate(offer=shared, count=3)
    with pytest.raises(OfferError, match="no pool of unique codes"):
        offer_codes_upload(offer=shared, text_or_file="A1\n")
    assert not CouponCode.objects.exists()


# -- uploading codes ------------------------------------------------------------------------------


def test_an_upload_adds_each_new_code_once_and_reports_the_rest(merchant, vips):
    # given: a pool with OLD-1; a list with a header, blanks, padding, a repeat and OLD-1
    offer = pool(merchant, [vips], "OLD-1")
    text = "code\nNEW-1\n\n  NEW-2  \nNEW-1\nOLD-1\n"

    # when
    done = offer_codes_upload(offer=offer, text_or_file=text)

    # then
    assert (done.added, done.skipped, done.repeated) == (2, ["OLD-1"], 1)
    assert sorted(CouponCode.objects.values_list("code", flat=True)) == ["NEW-1", "NEW-2", "OLD-1"]


def test_a_csv_file_gives_its_first_column(merchant, vips):
    offer = pool(merchant, [vips])
    file = SimpleUploadedFile(
        "codes.csv", '\ufeffcode,customer\nC-1,ann\n"C-2",bob\n'.encode(), "text/csv"
    )

    done = offer_codes_upload(offer=offer, text_or_file=file)

    assert done.added == 2
    assert sorted(CouponCode.objects.values_list("code", flat=True)) == ["C-1", "C-2"]


def test_one_bad_line_refuses_the_whole_upload_naming_the_lines(merchant, vips):
    offer = pool(merchant, [vips])
    text = "\n".join(["GOOD-1", "HAS SPACE", "X" * 65, "GOOD-2", "AND\tTAB", "Y" * 70])

    errors = refusal(offer_codes_upload, offer=offer, text_or_file=text)

    assert errors == {
        "codes": [
            "Codes longer than 64 characters on lines 3 and 6. Nothing was added.",
            "Codes with spaces on lines 2 and 5. Nothing was added.",
        ]
    }
    assert not CouponCode.objects.exists()


def test_many_bad_lines_are_counted_after_the_first_twenty(merchant, vips):
    offer = pool(merchant, [vips])
    text = "\n".join(f"BAD {i}" for i in range(25))

    errors = refusal(offer_codes_upload, offer=offer, text_or_file=text)

    assert errors["codes"] == [
        "Codes with spaces on lines 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, "
        "18, 19, 20 and 5 more. Nothing was added."
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("\n \n", offer_services.UPLOAD_EMPTY),
        ("code\n", offer_services.UPLOAD_EMPTY),
        (b"\xff\xfeA\x00", offer_services.UPLOAD_ENCODING),
    ],
    ids=["blank", "header-only", "not-utf8"],
)
def test_an_upload_without_codes_is_refused(merchant, vips, content, message):
    offer = pool(merchant, [vips])

    errors = refusal(
        offer_codes_upload,
        offer=offer,
        text_or_file=io.BytesIO(content if isinstance(content, bytes) else content.encode()),
    )

    assert errors == {"codes": [message]}


def test_at_most_a_hundred_thousand_codes_per_upload(merchant, vips, monkeypatch):
    monkeypatch.setattr(offer_services, "CODES_AT_MOST", 3)
    offer = pool(merchant, [vips])

    errors = refusal(offer_codes_upload, offer=offer, text_or_file="A\nB\nC\nD\n")

    assert errors == {"codes": ["At most 3 codes per upload (4 given): split the list."]}


# -- the pages ------------------------------------------------------------------------------------


def client_as(merchant, role, username=None) -> Client:
    user = UserFactory(username=username or f"as-{role}")
    StaffMembershipFactory(user=user, merchant=merchant, role=role)
    client = Client()
    assert client.login(username=user.username, password=DEMO_PASSWORD)
    return client


@pytest.fixture
def manager(merchant) -> Client:
    return client_as(merchant, "manager")


def offer_post(**changes):
    data = {
        "name": "Free preroll",
        "description": "One free preroll with any purchase.",
        "kind": OfferKind.REWARD,
        "code_mode": CodeMode.UNIQUE,
        "shared_code": "",
        "valid_from": "2026-06-01",
        "valid_until": "2026-06-30",
        "is_active": "on",
    }
    return {**data, **changes}


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_a_manager_creates_an_offer_then_edits_it(manager, merchant, vips, staff_members):
    # when: a new offer is posted
    created = manager.post(
        reverse("campaigns:offer_new"),
        offer_post(include=[vips.pk], exclude=[staff_members.pk]),
        follow=True,
    )

    # then: it is saved and its page says so
    offer = Offer.objects.get(name="Free preroll")
    assert created.redirect_chain == [(reverse("campaigns:offer_detail", args=[offer.pk]), 302)]
    assert messages_of(created) == ['Offer "Free preroll" saved.']
    assert offer.merchant == merchant and offer.created_by.username == "as-manager"
    assert (offer.valid_from, offer.valid_until) == (dt.date(2026, 6, 1), dt.date(2026, 6, 30))
    page = created.content.decode()
    assert "Running today" in page and 'id="generate-form"' in page

    # when: its edit page is opened and posted back with changes
    form = manager.get(reverse("campaigns:offer_edit", args=[offer.pk])).context["form"]
    assert form.initial["include"] == [vips.pk] and form.initial["exclude"] == [staff_members.pk]
    edited = manager.post(
        reverse("campaigns:offer_edit", args=[offer.pk]),
        offer_post(name="Two prerolls", include=[vips.pk, staff_members.pk], is_active=""),
    )

    # then
    assert edited.status_code == 302
    offer.refresh_from_db()
    assert (offer.name, offer.is_active) == ("Two prerolls", False)
    assert set(offer.targeting.values_list("segment__name", "exclude")) == {
        ("VIPs", False),
        ("Staff members", False),
    }


def test_a_manager_creates_a_content_block_then_edits_it(manager, vips):
    created = manager.post(
        reverse("campaigns:content_new"),
        {
            "title": "Member night",
            "body": "Thursday.",
            "link": "example.com/night",
            "include": [vips.pk],
            "is_active": "on",
        },
    )
    block = ContentBlock.objects.get()
    assert created.status_code == 302 and created["Location"] == reverse("campaigns:offers")
    assert block.link == "https://example.com/night"

    edited = manager.post(
        reverse("campaigns:content_edit", args=[block.pk]),
        {"title": "Member night, again", "include": [vips.pk]},
    )

    block.refresh_from_db()
    assert edited.status_code == 302
    assert (block.title, block.is_active, block.link) == ("Member night, again", False, "")
    listing = manager.get(reverse("campaigns:offers")).content.decode()
    assert reverse("campaigns:content_edit", args=[block.pk]) in listing


def test_a_refused_save_shows_the_errors_on_the_form_and_saves_nothing(manager, merchant, vips):
    new_offer(merchant, [vips], name="Free preroll")

    response = manager.post(
        reverse("campaigns:offer_new"),
        offer_post(code_mode=CodeMode.SHARED),
    )

    # then: every problem at once, each on its field
    assert response.status_code == 400
    assert response.context["form"].errors == {
        "name": ['There is already an offer named "Free preroll": choose another name.'],
        "shared_code": [offer_services.SHARED_CODE_REQUIRED],
        "include": [offer_services.NO_INCLUDED_SEGMENT],
    }
    html = response.content.decode()
    assert "Nothing was saved." in html
    assert Offer.objects.count() == 1


def test_reversed_dates_are_said_in_words_on_the_form(manager, vips):
    response = manager.post(
        reverse("campaigns:offer_new"), offer_post(valid_until="2026-05-01", include=[vips.pk])
    )

    assert response.status_code == 400
    assert response.context["form"].errors == {
        "valid_until": ["The last day cannot be before the first day (2026-06-01)."]
    }


def test_another_merchants_segment_is_not_a_choice(manager, vips):
    theirs = manual(MerchantFactory(slug="rival"), "Theirs")

    response = manager.post(
        reverse("campaigns:offer_new"), offer_post(include=[vips.pk], exclude=[theirs.pk])
    )

    assert response.status_code == 400
    assert "exclude" in response.context["form"].errors
    assert not Offer.objects.exists()
    assert [s.name for s in response.context["form"].fields["exclude"].queryset] == ["VIPs"]


def test_only_active_segments_are_offered_to_aim_at(manager, merchant, vips):
    manual(merchant, "Asleep", active=False)

    form = manager.get(reverse("campaigns:offer_new")).context["form"]

    assert [s.name for s in form.fields["include"].queryset] == ["VIPs"]
    assert [s.name for s in form.fields["exclude"].queryset] == ["Asleep", "VIPs"]
    assert "Only active segments can be chosen" in form.fields["include"].help_text


def test_an_inactive_segment_aimed_at_is_named_on_the_edit_page(manager, merchant, vips):
    offer = new_offer(merchant, [vips])
    segment_services.segments_set_active(segments=[vips], active=False)

    html = manager.get(reverse("campaigns:offer_edit", args=[offer.pk])).content.decode()

    assert 'id="inactive-included"' in html and "“VIPs”" in html


@pytest.fixture
def rival_items(db):
    rival = MerchantFactory(slug="rival")
    theirs = manual(rival, "Theirs")
    offer = pool(rival, [theirs], "R-1", name="Rival deal")
    block = content_block_save(merchant=rival, title="Rival night", include=[theirs])
    return offer, block


@pytest.mark.parametrize(
    ("method", "name", "item"),
    [
        ("get", "campaigns:offer_detail", 0),
        ("get", "campaigns:offer_edit", 0),
        ("post", "campaigns:offer_edit", 0),
        ("post", "campaigns:offer_codes_generate", 0),
        ("post", "campaigns:offer_codes_upload", 0),
        ("post", "campaigns:offer_toggle", 0),
        ("get", "campaigns:content_edit", 1),
        ("post", "campaigns:content_edit", 1),
        ("post", "campaigns:content_toggle", 1),
    ],
)
def test_another_merchants_offer_or_block_is_not_found(manager, rival_items, method, name, item):
    target = rival_items[item]

    response = getattr(manager, method)(reverse(name, args=[target.pk]), {"count": "5"})

    assert response.status_code == 404
    assert Offer.objects.get(pk=rival_items[0].pk).is_active
    assert CouponCode.objects.filter(offer=rival_items[0]).count() == 1


@pytest.fixture
def mine(merchant, vips):
    offer = pool(merchant, [vips], "M-1", name="Mine")
    block = content_block_save(merchant=merchant, title="My night", include=[vips])
    return offer, block


@pytest.mark.parametrize(
    ("name", "item", "data"),
    [
        ("campaigns:offer_new", None, {}),
        ("campaigns:offer_edit", 0, {}),
        ("campaigns:offer_codes_generate", 0, {"count": "5", "length": "8"}),
        ("campaigns:offer_codes_upload", 0, {"codes": "X-1\nX-2"}),
        ("campaigns:offer_toggle", 0, {}),
        ("campaigns:content_new", None, {}),
        ("campaigns:content_edit", 1, {}),
        ("campaigns:content_toggle", 1, {}),
    ],
)
def test_staff_may_not_post_and_nothing_changes(merchant, vips, mine, name, item, data):
    staff = client_as(merchant, "staff")
    args = [] if item is None else [mine[item].pk]
    if not data:
        data = offer_post(name="Changed", include=[vips.pk], title="Changed")

    response = staff.post(reverse(name, args=args), data)

    assert response.status_code == 403
    assert denied_message(Action.MANAGE_OFFERS) in response.content.decode()
    assert sorted(Offer.objects.values_list("name", "is_active")) == [("Mine", True)]
    assert list(ContentBlock.objects.values_list("title", "is_active")) == [("My night", True)]
    assert list(CouponCode.objects.values_list("code", flat=True)) == ["M-1"]


def test_staff_read_an_offer_but_are_offered_no_button(merchant, mine):
    staff = client_as(merchant, "staff")
    manager = client_as(merchant, "manager")
    offer, block = mine

    for client, can in ((staff, False), (manager, True)):
        detail = client.get(reverse("campaigns:offer_detail", args=[offer.pk]))
        listing = client.get(reverse("campaigns:offers")).content.decode()
        html = detail.content.decode()
        assert detail.status_code == 200
        assert ('id="edit-offer"' in html) is can
        assert ('id="toggle-active"' in html) is can
        assert ('id="generate-form"' in html) is can
        assert ('id="upload-form"' in html) is can
        assert ('id="new-offer"' in listing) is can
        assert ('id="new-content"' in listing) is can
        assert (reverse("campaigns:content_edit", args=[block.pk]) in listing) is can
        assert reverse("campaigns:offer_detail", args=[offer.pk]) in listing
    assert staff.get(reverse("campaigns:offer_new")).status_code == 403
    assert staff.get(reverse("campaigns:content_edit", args=[block.pk])).status_code == 403


def test_the_offer_page_shows_codes_with_their_holders(manager, merchant, vips):
    # given: a pool of three codes, one given, and a redemption of it
    offer = pool(merchant, [vips], "B-1", "B-2", "B-3")
    ann = CustomerFactory(merchant=merchant, first_name="Ann", last_name="Lee", external_id="C-9")
    offer_code_assign(offer=offer, customer=ann)
    Redemption.objects.create(
        merchant=merchant, customer=ann, external_id="R1", reward="B-1", redeemed_at=NOW
    )

    # when
    response = manager.get(reverse("campaigns:offer_detail", args=[offer.pk]))

    # then
    detail = response.context["detail"]
    assert [c.code for c in detail.codes] == ["B-1", "B-3", "B-2"]  # given ones first
    assert (detail.row.codes_given, detail.row.codes_free, detail.row.redemptions) == (1, 2, 1)
    html = response.content.decode()
    assert reverse("customers:detail", args=[ann.pk]) in html and "Ann Lee" in html
    assert "15 Jun 2026 12:00" in html  # given at, merchant-local


def test_the_offer_page_lists_the_latest_fifty_codes_in_few_queries(
    manager, merchant, vips, django_assert_max_num_queries
):
    offer = pool(merchant, [vips], *(f"C-{i:03d}" for i in range(80)))
    manager.get(reverse("campaigns:offer_detail", args=[offer.pk]))  # sessions warmed

    with django_assert_max_num_queries(12):
        response = manager.get(reverse("campaigns:offer_detail", args=[offer.pk]))

    codes = response.context["detail"].codes
    assert len(codes) == 50 and codes[0].code == "C-079"
    assert response.context["detail"].codes_total == 80


def test_the_offers_page_counts_a_large_pool_in_its_two_queries(
    merchant, vips, django_assert_num_queries
):
    # given: a pool of 3,000 codes, one given, and redemptions of 100 of its codes
    offer = pool(merchant, [vips], *(f"P-{i:05d}" for i in range(3000)))
    ann = CustomerFactory(merchant=merchant)
    offer_code_assign(offer=offer, customer=ann)
    Redemption.objects.bulk_create(
        Redemption(
            merchant=merchant, customer=ann, external_id=f"R{i}", reward=reward, redeemed_at=NOW
        )
        for i, reward in enumerate([f"P-{i:05d}" for i in range(100)] + ["Other"] * 50)
    )

    # when
    with django_assert_num_queries(2):
        (row,) = selectors.offer_list(merchant=merchant, today=TODAY)

    # then
    assert (row.codes_given, row.codes_free, row.redemptions) == (1, 2999, 100)


def test_an_offer_without_a_pool_has_no_code_forms(manager, merchant, vips):
    offer = new_offer(merchant, [vips], code_mode=CodeMode.SHARED, shared_code="SPRING")

    html = manager.get(reverse("campaigns:offer_detail", args=[offer.pk])).content.decode()

    assert "<code>SPRING</code>" in html
    assert 'id="generate-form"' not in html and 'id="upload-form"' not in html


def test_codes_generated_from_the_page(manager, merchant, vips):
    offer = pool(merchant, [vips])

    response = manager.post(
        reverse("campaigns:offer_codes_generate", args=[offer.pk]),
        {"count": "20", "code_prefix": "BD-", "length": "8"},
        follow=True,
    )

    assert messages_of(response) == ["20 new codes added to the pool."]
    assert CouponCode.objects.filter(offer=offer, code__startswith="BD-").count() == 20
    assert len(response.context["detail"].codes) == 20


def test_a_refused_generation_shows_the_error_on_its_form(manager, merchant, vips):
    offer = pool(merchant, [vips])

    response = manager.post(
        reverse("campaigns:offer_codes_generate", args=[offer.pk]),
        {"count": "5", "code_prefix": "NO SPACE", "length": "8"},
    )

    assert response.status_code == 400
    assert list(response.context["generate_form"].errors) == ["code_prefix"]
    assert not CouponCode.objects.exists()


def test_codes_uploaded_from_the_page_report_what_was_skipped(manager, merchant, vips):
    offer = pool(merchant, [vips], "OLD-1")

    response = manager.post(
        reverse("campaigns:offer_codes_upload", args=[offer.pk]),
        {"codes": "NEW-1\nOLD-1\nNEW-1\n"},
        follow=True,
    )

    assert messages_of(response) == [
        "1 code added to the pool.",
        "Skipped 1 code the pool had already: OLD-1.",
        "Dropped 1 line repeating a code listed above.",
    ]


def test_a_refused_upload_names_the_lines_on_its_form(manager, merchant, vips):
    offer = pool(merchant, [vips])
    file = SimpleUploadedFile("codes.txt", b"GOOD\nBAD ONE\n")

    response = manager.post(
        reverse("campaigns:offer_codes_upload", args=[offer.pk]), {"file": file}
    )

    assert response.status_code == 400
    assert response.context["upload_form"].errors["codes"] == [
        "Codes with spaces on line 2. Nothing was added."
    ]
    assert "Codes with spaces on line 2." in response.content.decode()
    assert not CouponCode.objects.exists()


def test_an_upload_needs_codes_or_a_file(manager, merchant, vips):
    offer = pool(merchant, [vips])

    response = manager.post(reverse("campaigns:offer_codes_upload", args=[offer.pk]), {})

    assert response.status_code == 400
    assert "Paste codes or choose a file." in response.content.decode()


def test_a_file_too_large_is_refused_before_it_is_read(manager, merchant, vips, monkeypatch):
    monkeypatch.setattr(offer_forms, "UPLOAD_MAX_BYTES", 10)
    offer = pool(merchant, [vips])
    file = SimpleUploadedFile("codes.txt", b"CODE-1\nCODE-2\n")

    response = manager.post(
        reverse("campaigns:offer_codes_upload", args=[offer.pk]), {"file": file}
    )

    assert response.status_code == 400
    assert offer_forms.UPLOAD_TOO_BIG in response.content.decode()
    assert not CouponCode.objects.exists()


def test_switching_an_offer_and_a_block_off_and_on(manager, mine):
    offer, block = mine

    off = manager.post(reverse("campaigns:offer_toggle", args=[offer.pk]), {"active": "0"})
    again = manager.post(reverse("campaigns:offer_toggle", args=[offer.pk]), {"active": "0"})
    block_off = manager.post(reverse("campaigns:content_toggle", args=[block.pk]))

    assert off.status_code == again.status_code == block_off.status_code == 302
    assert not Offer.objects.get(pk=offer.pk).is_active  # a second "off" keeps it off
    assert not ContentBlock.objects.get(pk=block.pk).is_active
    manager.post(reverse("campaigns:offer_toggle", args=[offer.pk]), {"active": "1"})
    assert Offer.objects.get(pk=offer.pk).is_active
