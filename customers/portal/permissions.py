"""Who may do what: the one place that decides, for the portal, the admin and the API.

Portal users act with a role in the current merchant (`StaffMembership.role`: staff, manager
or owner); `ROLE_MATRIX` says which roles may take each `Action`, and `docs/roles.md` is the
same matrix for users (a test keeps the two equal). Support staff work in the Django admin
across merchants, with Django's permissions: `SUPPORT_PERMISSION` names the permission that
allows each action there, and admin actions ask `support_may` (through
`ModelAdmin.has_<name>_permission`). Views ask `may(request, action)`, most of them through
`MerchantRequiredMixin.permission`; templates read `can.<action>` (the context processor
`customers.portal.context_processors.current_merchant`), so a button is shown exactly when its
view would allow it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

from customers.models import Role

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
    from django.http import HttpRequest


class Action(StrEnum):
    """What a user can do. The value is the name templates use (`can.save_segments`)."""

    #: See customers, segments, their counts and statistics, why in or out, history.
    VIEW = "view"
    #: Open the rule builder and see the live count and funnel of rules (not save them).
    BUILD_SEGMENTS = "build_segments"
    #: Create, edit, duplicate a segment, restore an old version of its definition.
    SAVE_SEGMENTS = "save_segments"
    #: Activate, deactivate and refresh segments now.
    OPERATE_SEGMENTS = "operate_segments"
    #: Add, remove and upload the members of manual segments.
    EDIT_MEMBERS = "edit_members"
    #: Take data out: CSV/XLSX exports of the lists, downloads of a segment's members.
    EXPORT_DATA = "export_data"
    #: Import CSV files (customers, transactions, ...).
    IMPORT_DATA = "import_data"
    #: Remove segments.
    REMOVE_SEGMENTS = "remove_segments"
    #: Create and edit campaign drafts, see the audience, send a test to oneself.
    DRAFT_CAMPAIGNS = "draft_campaigns"
    #: Send or schedule a campaign, cancel a schedule, remove a draft, set the contact rules.
    SEND_CAMPAIGNS = "send_campaigns"
    #: Create and edit offers and content blocks, upload and generate codes.
    MANAGE_OFFERS = "manage_offers"
    #: Add and remove the merchant's staff and change their roles.
    MANAGE_STAFF = "manage_staff"
    #: Create and revoke API tokens.
    MANAGE_API_TOKENS = "manage_api_tokens"
    #: Register, change, switch off and on, and remove webhook endpoints; rotate their
    #: secrets; read their delivery logs and resend.
    MANAGE_WEBHOOKS = "manage_webhooks"
    #: Change the merchant's settings (channels, ...).
    MANAGE_SETTINGS = "manage_settings"
    #: Change the score settings (lifecycle thresholds, RFM grid, tier rules, cadence) and
    #: recompute the scores now.
    MANAGE_SCORES = "manage_scores"
    #: Support only: recompute derived data (customer metrics) in the admin.
    RECOMPUTE_METRICS = "recompute_metrics"
    #: Support only: unlock an account locked by failed sign-ins.
    UNLOCK_SIGN_IN = "unlock_sign_in"


_EVERYONE = frozenset({Role.STAFF, Role.MANAGER, Role.OWNER})
_MANAGERS = frozenset({Role.MANAGER, Role.OWNER})
_OWNERS = frozenset({Role.OWNER})

#: The portal roles that may take each action (no role: support only, in the admin).
ROLE_MATRIX: dict[Action, frozenset[Role]] = {
    Action.VIEW: _EVERYONE,
    Action.BUILD_SEGMENTS: _EVERYONE,
    Action.SAVE_SEGMENTS: _MANAGERS,
    Action.OPERATE_SEGMENTS: _MANAGERS,
    Action.EDIT_MEMBERS: _MANAGERS,
    Action.EXPORT_DATA: _MANAGERS,
    Action.IMPORT_DATA: _MANAGERS,
    Action.REMOVE_SEGMENTS: _OWNERS,
    Action.DRAFT_CAMPAIGNS: _EVERYONE,
    Action.SEND_CAMPAIGNS: _MANAGERS,
    Action.MANAGE_OFFERS: _MANAGERS,
    Action.MANAGE_STAFF: _OWNERS,
    Action.MANAGE_API_TOKENS: _OWNERS,
    Action.MANAGE_WEBHOOKS: _OWNERS,
    Action.MANAGE_SETTINGS: _OWNERS,
    Action.MANAGE_SCORES: _MANAGERS,
    Action.RECOMPUTE_METRICS: frozenset(),
    Action.UNLOCK_SIGN_IN: frozenset(),
}

#: The Django permission that lets support staff take each action in the admin.
SUPPORT_PERMISSION: dict[Action, str] = {
    Action.VIEW: "customers.view_customer",
    Action.BUILD_SEGMENTS: "segments.view_segment",
    Action.SAVE_SEGMENTS: "segments.change_segment",
    Action.OPERATE_SEGMENTS: "segments.change_segment",
    Action.EDIT_MEMBERS: "segments.change_segment",
    Action.EXPORT_DATA: "customers.view_customer",
    Action.IMPORT_DATA: "customers.add_customer",
    Action.REMOVE_SEGMENTS: "segments.delete_segment",
    Action.DRAFT_CAMPAIGNS: "campaigns.change_campaign",
    Action.SEND_CAMPAIGNS: "campaigns.change_campaign",
    Action.MANAGE_OFFERS: "campaigns.change_offer",
    Action.MANAGE_STAFF: "customers.change_staffmembership",
    Action.MANAGE_API_TOKENS: "customers.change_merchant",
    Action.MANAGE_WEBHOOKS: "campaigns.change_webhookendpoint",
    Action.MANAGE_SETTINGS: "customers.change_merchant",
    Action.MANAGE_SCORES: "customers.change_scoresettings",
    Action.RECOMPUTE_METRICS: "customers.change_merchant",
    Action.UNLOCK_SIGN_IN: "auth.change_user",
}

#: What the portal shows a role that may not take an action.
_DOING = {
    Action.VIEW: "see this merchant's data",
    Action.BUILD_SEGMENTS: "build segments",
    Action.SAVE_SEGMENTS: "save segments",
    Action.OPERATE_SEGMENTS: "activate, deactivate or refresh segments",
    Action.EDIT_MEMBERS: "change the members of manual segments",
    Action.EXPORT_DATA: "export or download customer data",
    Action.IMPORT_DATA: "import data",
    Action.REMOVE_SEGMENTS: "remove segments",
    Action.DRAFT_CAMPAIGNS: "draft campaigns",
    Action.SEND_CAMPAIGNS: "send campaigns",
    Action.MANAGE_OFFERS: "manage offers and content",
    Action.MANAGE_STAFF: "manage staff",
    Action.MANAGE_API_TOKENS: "manage API tokens",
    Action.MANAGE_WEBHOOKS: "manage webhooks",
    Action.MANAGE_SETTINGS: "change settings",
    Action.MANAGE_SCORES: "change score settings or recompute scores",
    Action.RECOMPUTE_METRICS: "recompute metrics",
    Action.UNLOCK_SIGN_IN: "unlock accounts",
}


def role_may(role: str | None, action: Action) -> bool:
    """May a portal user with `role` (None: no role in the merchant) take `action`?"""
    return role is not None and role in ROLE_MATRIX[action]


def may(request: HttpRequest, action: Action) -> bool:
    """May the signed-in user take `action` in the request's current merchant?"""
    membership = getattr(request, "membership", None)
    return membership is not None and role_may(membership.role, action)


def support_may(user: AbstractBaseUser | AnonymousUser, action: Action) -> bool:
    """May this admin user (support staff) take `action` in the admin?"""
    has_perm = getattr(user, "has_perm", None)
    return bool(
        user.is_active
        and getattr(user, "is_staff", False)
        and has_perm is not None
        and has_perm(SUPPORT_PERMISSION[action])
    )


def role_permissions(role: str | None) -> dict[str, bool]:
    """Every action's name with whether `role` may take it (for templates: `can`)."""
    return {action.value: role_may(role, action) for action in Action}


def denied_message(action: Action) -> str:
    """Why a role was refused, naming the roles that may, e.g. "Only managers and owners
    may save segments."."""
    roles = [str(Role(role).label).lower() + "s" for role in Role if role in ROLE_MATRIX[action]]
    doing = _DOING[action]
    if not roles:
        return f"Only support staff may {doing}."
    who = roles[0] if len(roles) == 1 else f"{', '.join(roles[:-1])} and {roles[-1]}"
    return f"Only {who} may {doing}."


def matrix_rows() -> list[dict[str, Any]]:
    """The matrix as rows (action, what it covers, and a flag per role), for docs and tests."""
    return [
        {
            "action": action.value,
            **{role.value: role in ROLE_MATRIX[action] for role in Role},
        }
        for action in Action
    ]
