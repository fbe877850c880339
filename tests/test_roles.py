"""The role matrix (`customers.portal.permissions`, `docs/roles.md`): every portal view and action,
tried by every role, is allowed exactly when the matrix says so, changes nothing when it is
refused, and the pages offer exactly the buttons the role may use. Admin actions ask the
same module.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.contrib.admin.sites import site
from django.contrib.auth.models import Permission
from django.test import Client, RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from campaigns.models import (
    Campaign,
    CampaignSegment,
    CodeMode,
    ContactRules,
    ContentBlock,
    ContentSegment,
    CouponCode,
    Offer,
    OfferSegment,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookMessage,
)
from campaigns.services.webhooks import endpoint_create
from customers.api_tokens import api_token_create
from customers.models import ApiToken, Role, ScoreSettings
from customers.portal.permissions import (
    ROLE_MATRIX,
    SUPPORT_PERMISSION,
    Action,
    denied_message,
    role_may,
    support_may,
)
from segments import services
from segments.models import Segment, SegmentKind, SegmentMembership
from tests.factories import (
    DEMO_PASSWORD,
    CustomerFactory,
    StaffMembershipFactory,
    UserFactory,
)
from tests.segments.conftest import builder_form

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent
ROLES = [Role.STAFF, Role.MANAGER, Role.OWNER]


@dataclass
class World:
    """One merchant's rows the requests act on."""

    customer: Any
    dynamic: Segment
    manual: Segment
    other: Segment  # a second dynamic segment (bulk actions, removal)


@pytest.fixture
def world(merchant):
    customer = CustomerFactory(merchant=merchant, external_id="C1")
    dynamic = services.segment_create(
        merchant=merchant,
        name="Buyers",
        kind=SegmentKind.DYNAMIC,
        rules={"match": "all", "conditions": [{"field": "orders_count", "op": "gte", "value": 0}]},
    )
    services.segment_update(segment=dynamic, description="second version")
    manual = services.segment_create(merchant=merchant, name="Hand picked", kind=SegmentKind.MANUAL)
    services.segment_members_add(segment=manual, customers=[customer.pk])
    other = services.segment_create(
        merchant=merchant,
        name="Other",
        kind=SegmentKind.DYNAMIC,
        rules={"match": "all", "conditions": [{"field": "orders_count", "op": "gte", "value": 1}]},
    )
    return World(customer=customer, dynamic=dynamic, manual=manual, other=other)


def client_for(merchant, role: Role) -> Client:
    user = UserFactory(username=f"as-{role.value}")
    StaffMembershipFactory(user=user, merchant=merchant, role=role)
    client = Client()
    assert client.login(username=user.username, password=DEMO_PASSWORD)
    return client


def score_settings_post(**changes: str) -> dict[str, str]:
    """The score settings form as the page submits it with the defaults, then `changes`."""
    from customers.forms import ScoreSettingsForm

    data = {
        name: str(value) for name, value in ScoreSettingsForm.initial_for(ScoreSettings()).items()
    }
    management = {"TOTAL_FORMS": "0", "INITIAL_FORMS": "0", "MIN_NUM_FORMS": "0"}
    data |= {f"tiers-{key}": value for key, value in management.items()}
    return {**data, "tiers-MAX_NUM_FORMS": "50", **changes}


def builder_post(**extra: str) -> dict[str, str]:
    rules = '{"match": "all", "conditions": [{"field": "orders_count", "op": "gte", "value": 2}]}'
    return builder_form(**{"name": "Saved by a role", "rules_json": rules, **extra})


@dataclass
class Case:
    """One request: the URL name it covers, how to make it, the action it needs, and (when
    allowed) what it changed."""

    name: str
    action: Action
    method: str
    url: Callable[[World], str]
    data: Callable[[World], dict[str, Any]] = field(default=lambda w: {})
    changed: Callable[[World], bool] | None = None


def url(name: str, *args: Callable[[World], Any], query: str = "") -> Callable[[World], str]:
    return lambda w: reverse(name, args=[arg(w) for arg in args]) + query


def pk(attr: str) -> Callable[[World], int]:
    return lambda w: getattr(w, attr).pk


def upload(w: World) -> dict[str, Any]:
    data = io.BytesIO(b"external_id\n")
    data.name = "members.csv"
    return {"file": data}


def role_offer(w: World) -> Offer:
    """The offer (a pool of unique codes aimed at the dynamic segment) offer cases act on."""
    offer, created = Offer.objects.get_or_create(
        merchant=w.dynamic.merchant, name="Role offer", defaults={"code_mode": CodeMode.UNIQUE}
    )
    if created:
        OfferSegment.objects.create(offer=offer, segment=w.dynamic)
    return offer


def offer_url(name: str, w: World) -> str:
    return reverse(f"campaigns:{name}", args=[role_offer(w).pk])


def offer_form(w: World, **changes: str) -> dict[str, Any]:
    return {"kind": "reward", "code_mode": "unique", "include": [w.dynamic.pk], **changes}


def content_url(name: str, w: World) -> str:
    block, created = ContentBlock.objects.get_or_create(
        merchant=w.dynamic.merchant, title="Role block"
    )
    if created:
        ContentSegment.objects.create(block=block, segment=w.dynamic)
    return reverse(f"campaigns:{name}", args=[block.pk])


def role_campaign(w: World, name: str = "Role campaign", **fields: Any) -> Campaign:
    """A campaign of the world's merchant sent to the manual segment (whose one member has
    no consent: a send reaches nobody); created on first use."""
    values = {"subject": "Hi", "body": "Hello {{ first_name }}", **fields}
    campaign, created = Campaign.objects.get_or_create(
        merchant=w.dynamic.merchant, name=name, defaults=values
    )
    if created:
        CampaignSegment.objects.create(campaign=campaign, segment=w.manual)
    return campaign


def campaign_url(name: str, w: World, **fields: Any) -> str:
    return reverse(f"campaigns:{name}", args=[role_campaign(w, **fields).pk])


def role_token(w: World) -> ApiToken:
    """The merchant's token "Role token" (made on first use)."""
    token = ApiToken.objects.filter(merchant=w.customer.merchant, name="Role token").first()
    if token is None:
        token = api_token_create(merchant=w.customer.merchant, name="Role token")[0]
    return token


def role_endpoint(w: World) -> WebhookEndpoint:
    """The merchant's webhook endpoint (a local address: allowed with DEBUG) with one failed
    delivery, made on first use."""
    merchant = w.customer.merchant
    endpoint = WebhookEndpoint.objects.filter(merchant=merchant).first()
    if endpoint is None:
        endpoint = endpoint_create(
            merchant=merchant, url="http://127.0.0.1:9/role", events=["segment.entered"]
        )
        message = WebhookMessage.objects.create(
            merchant=merchant, key="msg_role", event="segment.entered", payload={}
        )
        WebhookDelivery.objects.create(endpoint=endpoint, message=message, status="failed")
    return endpoint


def endpoint_url(name: str, w: World) -> str:
    return reverse(f"webhooks:{name}", args=[role_endpoint(w).pk])


def delivery_url(name: str, w: World) -> str:
    endpoint = role_endpoint(w)
    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    return reverse(f"webhooks:{name}", args=[endpoint.pk, delivery.pk])


#: The endpoint's secret when the rotate case made its URL (before the request).
SECRET_BEFORE: dict[str, str] = {}


def rotate_url(w: World) -> str:
    SECRET_BEFORE["secret"] = role_endpoint(w).secret
    return endpoint_url("rotate", w)


def endpoint_form(**changes: Any) -> dict[str, Any]:
    return {"url": "http://127.0.0.1:9/role", "events": ["segment.entered"], **changes}


def campaign_form(w: World, **changes: Any) -> dict[str, Any]:
    return {
        "name": "Role campaign",
        "channel": "email",
        "subject": "Hi",
        "body": "Hello {{ first_name }}",
        "holdout_percent": "0",
        "attribution_days": "7",
        "include": [w.manual.pk],
        **changes,
    }


def campaign_status(name: str = "Role campaign") -> str:
    return Campaign.objects.get(name=name).status


def campaign_exists(name: str) -> bool:
    return Campaign.objects.filter(name=name).exists()


def scheduled_campaign_url(name: str, w: World) -> str:
    return campaign_url(name, w, status="scheduled", send_at=timezone.now())


def campaign_rules_saved(w: World) -> bool:
    return ContactRules.objects.filter(merchant=w.dynamic.merchant, cap_messages=2).exists()


CASES = [
    # customers
    Case("customers:list", Action.VIEW, "get", url("customers:list")),
    Case("customers:list", Action.EXPORT_DATA, "get", url("customers:list", query="?_export=csv")),
    Case("customers:detail", Action.VIEW, "get", url("customers:detail", pk("customer"))),
    Case("customers:import", Action.IMPORT_DATA, "get", url("customers:import")),
    Case("customers:import", Action.IMPORT_DATA, "post", url("customers:import")),
    Case(
        "customers:import_sample",
        Action.IMPORT_DATA,
        "get",
        lambda w: reverse("customers:import_sample", args=["customers"]),
    ),
    Case(
        "customers:import_confirm",
        Action.IMPORT_DATA,
        "post",
        url("customers:import_confirm"),
        lambda w: {"token": "x" * 20},
    ),
    Case(
        "customers:import_cancel",
        Action.IMPORT_DATA,
        "post",
        url("customers:import_cancel"),
        lambda w: {"token": "x" * 20},
    ),
    # customer scores
    Case("customers:scores", Action.VIEW, "get", url("customers:scores")),
    Case("customers:score_transitions", Action.VIEW, "get", url("customers:score_transitions")),
    Case("customers:score_model", Action.VIEW, "get", url("customers:score_model")),
    Case(
        "customers:score_transition_customers",
        Action.VIEW,
        "get",
        url("customers:score_transition_customers", query="?from=new&to=at_risk"),
    ),
    Case("customers:score_settings", Action.MANAGE_SCORES, "get", url("customers:score_settings")),
    Case(
        "customers:score_settings",
        Action.MANAGE_SCORES,
        "post",
        url("customers:score_settings"),
        lambda w: score_settings_post(dormant_days="200"),
        changed=lambda w: ScoreSettings.objects.get().dormant_days == 200,
    ),
    Case(
        "customers:score_recompute",
        Action.MANAGE_SCORES,
        "post",
        url("customers:score_recompute"),
        changed=lambda w: ScoreSettings.objects.get().status == "queued",
    ),
    # API tokens (owners)
    Case("customers:api_tokens", Action.MANAGE_API_TOKENS, "get", url("customers:api_tokens")),
    Case(
        "customers:api_tokens",
        Action.MANAGE_API_TOKENS,
        "post",
        url("customers:api_tokens"),
        lambda w: {"name": "Made by a role", "scope": "read"},
        changed=lambda w: ApiToken.objects.filter(name="Made by a role").exists(),
    ),
    Case(
        "customers:api_token_revoke",
        Action.MANAGE_API_TOKENS,
        "post",
        lambda w: reverse("customers:api_token_revoke", args=[role_token(w).pk]),
        changed=lambda w: role_token(w).revoked_at is not None,
    ),
    # webhooks (owners)
    Case("webhooks:list", Action.MANAGE_WEBHOOKS, "get", url("webhooks:list")),
    Case("webhooks:new", Action.MANAGE_WEBHOOKS, "get", url("webhooks:new")),
    Case(
        "webhooks:new",
        Action.MANAGE_WEBHOOKS,
        "post",
        url("webhooks:new"),
        lambda w: endpoint_form(description="Made by a role"),
        changed=lambda w: WebhookEndpoint.objects.filter(description="Made by a role").exists(),
    ),
    Case("webhooks:detail", Action.MANAGE_WEBHOOKS, "get", lambda w: endpoint_url("detail", w)),
    Case(
        "webhooks:detail",
        Action.MANAGE_WEBHOOKS,
        "get",
        lambda w: endpoint_url("detail", w) + "?_export=csv",
    ),
    Case("webhooks:edit", Action.MANAGE_WEBHOOKS, "get", lambda w: endpoint_url("edit", w)),
    Case(
        "webhooks:edit",
        Action.MANAGE_WEBHOOKS,
        "post",
        lambda w: endpoint_url("edit", w),
        lambda w: endpoint_form(description="Edited by a role"),
        changed=lambda w: role_endpoint(w).description == "Edited by a role",
    ),
    Case(
        "webhooks:switch",
        Action.MANAGE_WEBHOOKS,
        "post",
        lambda w: endpoint_url("switch", w),
        lambda w: {"active": "0"},
        changed=lambda w: not role_endpoint(w).is_active,
    ),
    Case(
        "webhooks:rotate",
        Action.MANAGE_WEBHOOKS,
        "post",
        lambda w: rotate_url(w),
        changed=lambda w: role_endpoint(w).secret != SECRET_BEFORE["secret"],
    ),
    Case(
        "webhooks:delete",
        Action.MANAGE_WEBHOOKS,
        "post",
        lambda w: endpoint_url("delete", w),
        changed=lambda w: not WebhookEndpoint.objects.exists(),
    ),
    Case("webhooks:delivery", Action.MANAGE_WEBHOOKS, "get", lambda w: delivery_url("delivery", w)),
    Case(
        "webhooks:resend",
        Action.MANAGE_WEBHOOKS,
        "post",
        lambda w: delivery_url("resend", w),
        changed=lambda w: WebhookDelivery.objects.get().status == "pending",
    ),
    # segments: reading
    Case("segments:list", Action.VIEW, "get", url("segments:list")),
    Case("segments:list", Action.EXPORT_DATA, "get", url("segments:list", query="?_export=csv")),
    Case("segments:detail", Action.VIEW, "get", url("segments:detail", pk("dynamic"))),
    Case(
        "segments:detail",
        Action.VIEW,
        "get",
        url("segments:detail", pk("dynamic"), query="?customer=C1"),
    ),
    Case("segments:history", Action.VIEW, "get", url("segments:history", pk("dynamic"))),
    Case(
        "segments:customer_segments",
        Action.VIEW,
        "get",
        url("segments:customer_segments", pk("customer")),
    ),
    Case(
        "segments:download",
        Action.EXPORT_DATA,
        "get",
        lambda w: reverse("segments:download", args=[w.manual.pk, "csv"]),
    ),
    # segments: building
    Case("segments:create", Action.BUILD_SEGMENTS, "get", url("segments:create")),
    Case("segments:edit", Action.BUILD_SEGMENTS, "get", url("segments:edit", pk("dynamic"))),
    Case(
        "segments:builder_editor",
        Action.BUILD_SEGMENTS,
        "post",
        url("segments:builder_editor"),
        lambda w: builder_post(),
    ),
    Case(
        "segments:builder_preview",
        Action.BUILD_SEGMENTS,
        "post",
        url("segments:builder_preview"),
        lambda w: builder_post(),
    ),
    Case(
        "segments:builder_editor_segment",
        Action.BUILD_SEGMENTS,
        "post",
        url("segments:builder_editor_segment", pk("dynamic")),
        lambda w: builder_post(),
    ),
    Case(
        "segments:builder_preview_segment",
        Action.BUILD_SEGMENTS,
        "post",
        url("segments:builder_preview_segment", pk("dynamic")),
        lambda w: builder_post(),
    ),
    # segments: saving
    Case(
        "segments:create",
        Action.SAVE_SEGMENTS,
        "post",
        url("segments:create"),
        lambda w: builder_post(),
        changed=lambda w: Segment.objects.filter(name="Saved by a role").exists(),
    ),
    Case(
        "segments:edit",
        Action.SAVE_SEGMENTS,
        "post",
        url("segments:edit", pk("dynamic")),
        lambda w: builder_post(name="Renamed"),
        changed=lambda w: Segment.objects.get(pk=w.dynamic.pk).name == "Renamed",
    ),
    Case(
        "segments:action",
        Action.SAVE_SEGMENTS,
        "post",
        url("segments:action", pk("dynamic")),
        lambda w: {"action": "duplicate"},
        changed=lambda w: Segment.objects.filter(name="Buyers (copy)").exists(),
    ),
    Case(
        "segments:restore",
        Action.SAVE_SEGMENTS,
        "post",
        lambda w: reverse("segments:restore", args=[w.dynamic.pk, 1]),
        changed=lambda w: Segment.objects.get(pk=w.dynamic.pk).definition_version == 3,
    ),
    Case(
        "segments:ready_made",
        Action.SAVE_SEGMENTS,
        "post",
        url("segments:ready_made"),
        lambda w: {"family": "lifecycle"},
        changed=lambda w: Segment.objects.filter(slug="lifecycle-new").exists(),
    ),
    # segments: operating
    Case(
        "segments:action",
        Action.OPERATE_SEGMENTS,
        "post",
        url("segments:action", pk("dynamic")),
        lambda w: {"action": "deactivate"},
        changed=lambda w: not Segment.objects.get(pk=w.dynamic.pk).is_active,
    ),
    Case(
        "segments:refresh",
        Action.OPERATE_SEGMENTS,
        "post",
        url("segments:refresh", pk("dynamic")),
    ),
    Case(
        "segments:bulk",
        Action.OPERATE_SEGMENTS,
        "post",
        url("segments:bulk"),
        lambda w: {"action": "deactivate", "ids": [w.other.pk], "confirmed": "1"},
        changed=lambda w: not Segment.objects.get(pk=w.other.pk).is_active,
    ),
    # manual members
    Case(
        "segments:member_add",
        Action.EDIT_MEMBERS,
        "post",
        url("segments:member_add", pk("manual")),
        lambda w: {"external_id": "C2"},
    ),
    Case(
        "segments:customer_add",
        Action.EDIT_MEMBERS,
        "post",
        url("segments:customer_add", pk("customer")),
        lambda w: {"segment": w.manual.pk},
    ),
    Case(
        "segments:member_remove",
        Action.EDIT_MEMBERS,
        "post",
        lambda w: reverse("segments:member_remove", args=[w.manual.pk, w.customer.pk]),
        changed=lambda w: not SegmentMembership.objects.filter(segment=w.manual).exists(),
    ),
    Case(
        "segments:member_upload",
        Action.EDIT_MEMBERS,
        "post",
        url("segments:member_upload", pk("manual")),
        upload,
        changed=lambda w: not SegmentMembership.objects.filter(segment=w.manual).exists(),
    ),
    # removing
    Case("segments:remove", Action.REMOVE_SEGMENTS, "get", url("segments:remove", pk("other"))),
    Case(
        "segments:remove",
        Action.REMOVE_SEGMENTS,
        "post",
        url("segments:remove", pk("other")),
        changed=lambda w: not Segment.objects.filter(pk=w.other.pk).exists(),
    ),
    Case(
        "segments:bulk",
        Action.REMOVE_SEGMENTS,
        "post",
        url("segments:bulk"),
        lambda w: {"action": "remove", "ids": [w.other.pk], "confirmed": "1"},
        changed=lambda w: not Segment.objects.filter(pk=w.other.pk).exists(),
    ),
    # reports
    Case("home", Action.VIEW, "get", url("home")),
    Case("home", Action.EXPORT_DATA, "get", url("home", query="?export=csv&table=lifecycle")),
    Case("analytics:segment_analysis", Action.VIEW, "get", url("analytics:segment_analysis")),
    Case(
        "analytics:segment_analysis",
        Action.EXPORT_DATA,
        "get",
        url("analytics:segment_analysis", query="?export=csv&table=groups"),
    ),
    Case("analytics:branch_revenue", Action.VIEW, "get", url("analytics:branch_revenue")),
    Case(
        "analytics:branch_revenue",
        Action.EXPORT_DATA,
        "get",
        url("analytics:branch_revenue", query="?export=xlsx&table=revenue"),
    ),
    Case("analytics:growth", Action.VIEW, "get", url("analytics:growth")),
    Case(
        "analytics:growth_changes",
        Action.VIEW,
        "get",
        lambda w: (
            reverse("analytics:growth_changes", args=[w.dynamic.pk]) + "?week=2026-11-30&kind=entry"
        ),
    ),
    Case("analytics:overlap", Action.VIEW, "get", url("analytics:overlap")),
    Case("analytics:key_figures", Action.VIEW, "get", url("analytics:key_figures")),
    # campaigns
    Case("campaigns:offers", Action.VIEW, "get", url("campaigns:offers")),
    Case(
        "campaigns:customer_visible",
        Action.VIEW,
        "get",
        url("campaigns:customer_visible", pk("customer")),
    ),
    # offers and content blocks (campaigns.offer_urls)
    Case("campaigns:offer_detail", Action.VIEW, "get", lambda w: offer_url("offer_detail", w)),
    Case("campaigns:offer_new", Action.MANAGE_OFFERS, "get", url("campaigns:offer_new")),
    Case(
        "campaigns:offer_new",
        Action.MANAGE_OFFERS,
        "post",
        url("campaigns:offer_new"),
        lambda w: offer_form(w, name="Made by a role"),
        changed=lambda w: Offer.objects.filter(name="Made by a role").exists(),
    ),
    Case("campaigns:offer_edit", Action.MANAGE_OFFERS, "get", lambda w: offer_url("offer_edit", w)),
    Case(
        "campaigns:offer_edit",
        Action.MANAGE_OFFERS,
        "post",
        lambda w: offer_url("offer_edit", w),
        lambda w: offer_form(w, name="Renamed offer"),
        changed=lambda w: Offer.objects.filter(name="Renamed offer").exists(),
    ),
    Case(
        "campaigns:offer_codes_generate",
        Action.MANAGE_OFFERS,
        "post",
        lambda w: offer_url("offer_codes_generate", w),
        lambda w: {"count": "3", "length": "8"},
        changed=lambda w: CouponCode.objects.count() == 3,
    ),
    Case(
        "campaigns:offer_codes_upload",
        Action.MANAGE_OFFERS,
        "post",
        lambda w: offer_url("offer_codes_upload", w),
        lambda w: {"codes": "ROLE-1\nROLE-2"},
        changed=lambda w: CouponCode.objects.count() == 2,
    ),
    Case(
        "campaigns:offer_toggle",
        Action.MANAGE_OFFERS,
        "post",
        lambda w: offer_url("offer_toggle", w),
        lambda w: {"active": "0"},
        changed=lambda w: not Offer.objects.get(name="Role offer").is_active,
    ),
    Case("campaigns:content_new", Action.MANAGE_OFFERS, "get", url("campaigns:content_new")),
    Case(
        "campaigns:content_new",
        Action.MANAGE_OFFERS,
        "post",
        url("campaigns:content_new"),
        lambda w: {"title": "Made by a role", "include": [w.dynamic.pk]},
        changed=lambda w: ContentBlock.objects.filter(title="Made by a role").exists(),
    ),
    Case(
        "campaigns:content_edit",
        Action.MANAGE_OFFERS,
        "get",
        lambda w: content_url("content_edit", w),
    ),
    Case(
        "campaigns:content_edit",
        Action.MANAGE_OFFERS,
        "post",
        lambda w: content_url("content_edit", w),
        lambda w: {"title": "Renamed block", "include": [w.dynamic.pk], "is_active": "on"},
        changed=lambda w: ContentBlock.objects.filter(title="Renamed block").exists(),
    ),
    Case(
        "campaigns:content_toggle",
        Action.MANAGE_OFFERS,
        "post",
        lambda w: content_url("content_toggle", w),
        lambda w: {"active": "0"},
        changed=lambda w: not ContentBlock.objects.get(title="Role block").is_active,
    ),
    # campaigns (the campaign pages)
    Case("campaigns:list", Action.VIEW, "get", url("campaigns:list")),
    Case("campaigns:list", Action.EXPORT_DATA, "get", url("campaigns:list", query="?_export=csv")),
    Case("campaigns:new", Action.DRAFT_CAMPAIGNS, "get", url("campaigns:new")),
    Case(
        "campaigns:new",
        Action.DRAFT_CAMPAIGNS,
        "post",
        url("campaigns:new"),
        lambda w: campaign_form(w, name="Drafted by a role"),
        changed=lambda w: campaign_exists("Drafted by a role"),
    ),
    Case("campaigns:edit", Action.DRAFT_CAMPAIGNS, "get", lambda w: campaign_url("edit", w)),
    Case(
        "campaigns:edit",
        Action.DRAFT_CAMPAIGNS,
        "post",
        lambda w: campaign_url("edit", w),
        lambda w: campaign_form(w, name="Renamed campaign"),
        changed=lambda w: campaign_exists("Renamed campaign"),
    ),
    Case("campaigns:detail", Action.VIEW, "get", lambda w: campaign_url("detail", w)),
    Case("campaigns:audience", Action.VIEW, "get", lambda w: campaign_url("audience", w)),
    Case("campaigns:progress", Action.VIEW, "get", lambda w: campaign_url("progress", w)),
    Case("campaigns:results", Action.VIEW, "get", lambda w: campaign_url("results", w)),
    Case("campaigns:deliveries", Action.VIEW, "get", lambda w: campaign_url("deliveries", w)),
    Case(
        "campaigns:deliveries",
        Action.EXPORT_DATA,
        "get",
        lambda w: campaign_url("deliveries", w) + "?_export=csv",
    ),
    Case(
        "campaigns:send",
        Action.SEND_CAMPAIGNS,
        "post",
        lambda w: campaign_url("send", w),
        lambda w: {"confirmed": "1"},
        changed=lambda w: campaign_status() != "draft",
    ),
    Case(
        "campaigns:schedule",
        Action.SEND_CAMPAIGNS,
        "post",
        lambda w: campaign_url("schedule", w),
        lambda w: {"send_at": "2099-01-04T09:00"},
        changed=lambda w: campaign_status() == "scheduled",
    ),
    Case(
        "campaigns:unschedule",
        Action.SEND_CAMPAIGNS,
        "post",
        lambda w: scheduled_campaign_url("unschedule", w),
        changed=lambda w: campaign_status() == "draft",
    ),
    Case(
        "campaigns:test",
        Action.DRAFT_CAMPAIGNS,
        "post",
        # No text: refused with a message before anything is sent (no file in var/outbox).
        lambda w: campaign_url("test", w, body=""),
    ),
    Case(
        "campaigns:duplicate",
        Action.DRAFT_CAMPAIGNS,
        "post",
        lambda w: campaign_url("duplicate", w),
        changed=lambda w: campaign_exists("Copy of Role campaign"),
    ),
    Case("campaigns:delete", Action.SEND_CAMPAIGNS, "get", lambda w: campaign_url("delete", w)),
    Case(
        "campaigns:delete",
        Action.SEND_CAMPAIGNS,
        "post",
        lambda w: campaign_url("delete", w),
        changed=lambda w: not campaign_exists("Role campaign"),
    ),
    Case("campaigns:rules", Action.VIEW, "get", url("campaigns:rules")),
    Case(
        "campaigns:rules",
        Action.SEND_CAMPAIGNS,
        "post",
        url("campaigns:rules"),
        lambda w: {
            "cap_messages": "2",
            "cap_days": "7",
            "quiet_start": "21:00",
            "quiet_end": "09:00",
        },
        changed=lambda w: campaign_rules_saved(w),
    ),
]


def case_id(case: Case) -> str:
    return f"{case.method}-{case.name}-{case.action.value}"


@pytest.mark.parametrize("role", ROLES, ids=[r.value for r in ROLES])
@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_every_view_allows_exactly_the_roles_of_the_matrix(merchant, world, role, case):
    # given a user of that role
    client = client_for(merchant, role)
    allowed = role_may(role, case.action)

    # when they make the request
    send = getattr(client, case.method)
    response = send(case.url(world), case.data(world))

    # then it is refused (403, naming who may) exactly when the matrix says so
    if allowed:
        assert response.status_code != 403, response.content[:300]
        assert response.status_code < 500
    else:
        assert response.status_code == 403
        assert denied_message(case.action) in response.content.decode()
    if case.changed is not None:
        assert case.changed(world) is allowed


def _portal_url_names() -> set[str]:
    names: set[str] = set()

    def walk(namespace: str, patterns: list) -> None:
        for pattern in patterns:
            if isinstance(pattern, URLPattern) and pattern.name:
                names.add(f"{namespace}:{pattern.name}")
            if isinstance(pattern, URLResolver):
                # An include() without a namespace of its own (campaigns.offer_urls).
                assert pattern.namespace is None
                walk(namespace, pattern.url_patterns)

    for namespace in ("customers", "segments", "analytics", "campaigns", "webhooks"):
        walk(namespace, get_resolver().namespace_dict[namespace][1].url_patterns)
    return names


def test_every_portal_url_is_tried_by_every_role():
    # A new view must be added to CASES (and so to the matrix) before it ships.
    covered = {case.name for case in CASES} | {"customers:switch_merchant"}
    covered.discard("home")  # the dashboard, at the root (analytics.views.DashboardView)
    assert _portal_url_names() == covered


@pytest.mark.parametrize("role", ROLES, ids=[r.value for r in ROLES])
def test_pages_offer_exactly_the_buttons_the_role_may_use(merchant, world, role):
    client = client_for(merchant, role)
    can = {action: role_may(role, action) for action in Action}

    detail = client.get(reverse("segments:detail", args=[world.dynamic.pk])).content.decode()
    manual = client.get(reverse("segments:detail", args=[world.manual.pk])).content.decode()
    listing = client.get(reverse("segments:list")).content.decode()
    customers = client.get(reverse("customers:list")).content.decode()
    history = client.get(reverse("segments:history", args=[world.dynamic.pk])).content.decode()
    builder = client.get(reverse("segments:edit", args=[world.dynamic.pk])).content.decode()

    assert ('id="refresh-now"' in detail) is can[Action.OPERATE_SEGMENTS]
    assert ('id="toggle-active"' in detail) is can[Action.OPERATE_SEGMENTS]
    assert ('value="duplicate"' in detail) is can[Action.SAVE_SEGMENTS]
    assert ("Remove…" in detail) is can[Action.REMOVE_SEGMENTS]
    assert ('id="download-menu"' in detail) is can[Action.EXPORT_DATA]
    assert (
        'action="' + reverse("segments:member_upload", args=[world.manual.pk]) in manual
    ) is can[Action.EDIT_MEMBERS]
    assert ("Export CSV" in listing) is can[Action.EXPORT_DATA]
    assert ("Export CSV" in customers) is can[Action.EXPORT_DATA]
    assert ('id="nav-api-tokens"' in customers) is can[Action.MANAGE_API_TOKENS]
    assert ('id="nav-webhooks"' in customers) is can[Action.MANAGE_WEBHOOKS]
    assert ('<option value="remove">' in listing) is can[Action.REMOVE_SEGMENTS]
    assert ('id="select-all"' in listing) is can[Action.OPERATE_SEGMENTS]
    assert ('<option value="deactivate">' in listing) is can[Action.OPERATE_SEGMENTS]
    assert (">Restore</button>" in history) is can[Action.SAVE_SEGMENTS]
    assert ('id="save-segment" disabled' in builder) is not can[Action.SAVE_SEGMENTS]
    assert ('href="/import/"' in customers) is can[Action.IMPORT_DATA]


def test_roles_doc_states_the_same_matrix():
    # docs/roles.md has one table row per action: | `action` | what | staff | manager | owner |
    text = (ROOT / "docs" / "roles.md").read_text()
    rows = re.findall(r"^\| `(\w+)` \|[^|]*\|([^|]*)\|([^|]*)\|([^|]*)\|", text, re.MULTILINE)
    documented = {
        Action(name): {
            role for role, mark in zip(ROLES, marks, strict=True) if mark.strip() == "yes"
        }
        for name, *marks in rows
    }
    assert documented == {action: set(roles) for action, roles in ROLE_MATRIX.items()}


# -- the admin ------------------------------------------------------------------------------


def support_user(username, *permissions):
    user = UserFactory(username=username, is_staff=True)
    for dotted in permissions:
        app_label, codename = dotted.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return type(user).objects.get(pk=user.pk)  # a fresh instance: no cached permissions


@pytest.mark.parametrize(
    ("model_admin", "action_name", "action"),
    [
        ("segments.segment", "refresh_now", Action.OPERATE_SEGMENTS),
        ("customers.merchant", "recompute_metrics", Action.RECOMPUTE_METRICS),
        ("customers.customer", "recompute_metrics", Action.RECOMPUTE_METRICS),
        ("auth.user", "unlock_sign_in", Action.UNLOCK_SIGN_IN),
        ("customers.apitoken", "revoke", Action.MANAGE_API_TOKENS),
        ("campaigns.webhookendpoint", "switch_off", Action.MANAGE_WEBHOOKS),
        ("campaigns.webhookendpoint", "switch_on", Action.MANAGE_WEBHOOKS),
        ("campaigns.webhookdelivery", "resend", Action.MANAGE_WEBHOOKS),
    ],
)
def test_admin_actions_ask_the_permissions_module(model_admin, action_name, action):
    app_label, model_name = model_admin.split(".")
    admin_for = next(
        ma
        for model, ma in site._registry.items()
        if model._meta.app_label == app_label and model._meta.model_name == model_name
    )
    view_perm = f"{app_label}.view_{model_name}"
    without = support_user("support-1", view_perm)
    with_perm = support_user("support-2", view_perm, SUPPORT_PERMISSION[action])
    request = RequestFactory().get("/admin/")

    request.user = without
    assert not support_may(without, action)
    assert action_name not in admin_for.get_actions(request)
    request.user = with_perm
    assert support_may(with_perm, action)
    assert action_name in admin_for.get_actions(request)
