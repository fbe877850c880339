"""Writes of campaigns before they are sent: drafts, schedules, duplicates, removal, the
merchant's contact rules, and the test send. Keyword-only, typed, in a transaction.

A campaign can be changed or removed while it is a draft or scheduled; once its send has
started (`campaigns.services.sending.campaign_start`) it is kept as it was: duplicate it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from campaigns import content
from campaigns.channels import ChannelError, OutgoingMessage, backend_for
from campaigns.models import (
    Campaign,
    CampaignSegment,
    CampaignStatus,
    Channel,
    ContactRules,
)
from customers.models import Customer, Merchant
from segments.models import Segment
from segments.services.common import user_or_none

if TYPE_CHECKING:
    from segments.services.common import Actor

NOT_EDITABLE = 'The campaign "{name}" has been sent ({status}): duplicate it to send it again.'
NO_INCLUDED = "Choose at least one segment to send to."
BOTH_WAYS = '"{segment}" cannot be both sent to and excluded.'
SUBJECT_REQUIRED = {
    Channel.EMAIL: "An email needs a subject.",
    Channel.PUSH: "A push needs a title.",
}
BODY_REQUIRED = "Write the message."
SEND_AT_PAST = "Choose a time in the future to schedule the send."
NOT_SCHEDULED = 'The campaign "{name}" is not scheduled.'
NO_TEST_ADDRESS = "Your account has no email address: add one to receive test sends."
TEST_FAILED = "The test could not be sent: {error}"
SAMPLE_NAME = ("Alex", "Sample")

#: The campaign fields a draft may set.
DRAFT_FIELDS = ("name", "channel", "subject", "body", "holdout_percent", "attribution_days")


def _check_editable(campaign: Campaign) -> None:
    if not campaign.is_editable:
        raise ValidationError(
            NOT_EDITABLE.format(name=campaign.name, status=campaign.get_status_display().lower())
        )


def check_content(campaign: Campaign) -> None:
    errors: dict[str, list[str]] = {}
    needs_subject = SUBJECT_REQUIRED.get(Channel(campaign.channel))
    if needs_subject and not campaign.subject.strip():
        errors["subject"] = [needs_subject]
    if not campaign.body.strip():
        errors["body"] = [BODY_REQUIRED]
    for name in ("subject", "body"):
        found = content.check(getattr(campaign, name))
        if found:
            errors.setdefault(name, []).extend(found)
    if errors:
        raise ValidationError(errors)


def _set_targeting(
    campaign: Campaign, include: Sequence[Segment], exclude: Sequence[Segment]
) -> None:
    if not include:
        raise ValidationError({"include": [NO_INCLUDED]})
    both = {s.pk for s in include} & {s.pk for s in exclude}
    if both:
        name = next(s.name for s in include if s.pk in both)
        raise ValidationError({"exclude": [BOTH_WAYS.format(segment=name)]})
    # Read again: the caller's objects may be stale (a segment deactivated since).
    current = Segment.objects.in_bulk([s.pk for s in [*include, *exclude]])
    links = [
        CampaignSegment(campaign=campaign, segment=current[s.pk], exclude=False) for s in include
    ]
    links += [
        CampaignSegment(campaign=campaign, segment=current[s.pk], exclude=True) for s in exclude
    ]
    for link in links:
        link.clean()  # the segment is the merchant's; an included one is active
    CampaignSegment.objects.filter(campaign=campaign).delete()
    CampaignSegment.objects.bulk_create(links)


@transaction.atomic
def campaign_save(
    *,
    merchant: Merchant,
    campaign: Campaign | None = None,
    include: Sequence[Segment],
    exclude: Sequence[Segment] = (),
    user: Actor = None,
    **fields: Any,
) -> Campaign:
    """Create a draft (no `campaign`) or change a draft or scheduled campaign: its content,
    channel, holdout, attribution window and segments. Raises ValidationError naming the
    field: unknown placeholders, missing subject or text, no included segment, a segment
    both included and excluded, another merchant's or an inactive included segment."""
    unknown = set(fields) - set(DRAFT_FIELDS)
    if unknown:
        raise TypeError(f"campaign_save() got unexpected fields: {sorted(unknown)}")
    if campaign is None:
        campaign = Campaign(merchant=merchant, created_by=user_or_none(user))
    elif campaign.merchant_id != merchant.pk:
        raise ValidationError("This campaign belongs to another merchant.")
    else:
        campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
        _check_editable(campaign)
    for name, value in fields.items():
        setattr(campaign, name, value)
    campaign.send_error = ""  # a scheduled start's refusal is answered by the edit
    campaign.full_clean(exclude=["merchant", "created_by", "sent_by", "duplicated_from"])
    check_content(campaign)
    campaign.save()
    _set_targeting(campaign, include, exclude)
    return campaign


@transaction.atomic
def campaign_schedule(*, campaign: Campaign, send_at: dt.datetime, user: Actor = None) -> Campaign:
    """Schedule a draft (or move a schedule) for `send_at`, an aware instant in the future
    (the form reads it as merchant-local time). The dispatcher starts it when it is due."""
    campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
    _check_editable(campaign)
    if send_at <= timezone.now():
        raise ValidationError({"send_at": [SEND_AT_PAST]})
    check_content(campaign)
    if not CampaignSegment.objects.filter(campaign=campaign, exclude=False).exists():
        raise ValidationError({"include": [NO_INCLUDED]})
    campaign.status = CampaignStatus.SCHEDULED
    campaign.send_at = send_at
    campaign.send_error = ""
    campaign.sent_by = user_or_none(user)
    campaign.save(update_fields=["status", "send_at", "send_error", "sent_by", "updated_at"])
    return campaign


@transaction.atomic
def campaign_unschedule(*, campaign: Campaign) -> Campaign:
    """A scheduled campaign goes back to draft (before it has started)."""
    campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
    if campaign.status != CampaignStatus.SCHEDULED:
        raise ValidationError(NOT_SCHEDULED.format(name=campaign.name))
    campaign.status = CampaignStatus.DRAFT
    campaign.send_at = None
    campaign.save(update_fields=["status", "send_at", "updated_at"])
    return campaign


@transaction.atomic
def campaign_duplicate(*, campaign: Campaign, user: Actor = None) -> Campaign:
    """A new draft with the campaign's content and segments ("Copy of ..."), its own holdout
    group, whatever the original's status. Segments that are inactive now are left out of
    the included ones (they cannot be targeted); the draft says so when saved again."""
    copy = Campaign.objects.create(
        merchant_id=campaign.merchant_id,
        name=f"Copy of {campaign.name}"[:200],
        channel=campaign.channel,
        subject=campaign.subject,
        body=campaign.body,
        holdout_percent=campaign.holdout_percent,
        attribution_days=campaign.attribution_days,
        duplicated_from=campaign,
        created_by=user_or_none(user),
    )
    CampaignSegment.objects.bulk_create(
        CampaignSegment(campaign=copy, segment_id=link.segment_id, exclude=link.exclude)
        for link in CampaignSegment.objects.filter(campaign=campaign).select_related("segment")
        if link.exclude or link.segment.is_active
    )
    return copy


@transaction.atomic
def campaign_delete(*, campaign: Campaign) -> None:
    """Remove a draft or scheduled campaign (a started one is kept: it has deliveries)."""
    campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
    _check_editable(campaign)
    campaign.delete()


@transaction.atomic
def contact_rules_save(*, merchant: Merchant, **fields: Any) -> ContactRules:
    """Set the merchant's frequency cap and quiet hours (validated)."""
    rules = ContactRules.objects.select_for_update().filter(merchant=merchant).first()
    rules = rules or ContactRules(merchant=merchant)
    for name, value in fields.items():
        setattr(rules, name, value)
    rules.full_clean(exclude=["merchant"])
    rules.save()
    return rules


def _sample_customer(campaign: Campaign, user: Actor) -> Customer:
    """A customer to render a test with: the first member of the audience, else an unsaved
    one named after the user."""
    from campaigns.audience import members

    member = members(campaign).select_related("tier", "home_branch", "merchant").first()
    if member is not None:
        return member
    first = getattr(user, "first_name", "") or SAMPLE_NAME[0]
    last = getattr(user, "last_name", "") or SAMPLE_NAME[1]
    return Customer(
        merchant=campaign.merchant, first_name=first, last_name=last, external_id="sample"
    )


def campaign_test_send(*, campaign: Campaign, user: Actor) -> OutgoingMessage:
    """Send the campaign, rendered for its first member, to the signed-in user's email
    address. An email goes through the email channel as the customers would get it; an SMS
    or a push is emailed as a preview (a portal user has no phone or app to send it to).
    Nothing is recorded against the campaign. Raises ValidationError with the reason."""
    address = getattr(user, "email", "")
    if not address:
        raise ValidationError(NO_TEST_ADDRESS)
    check_content(campaign)
    customer = _sample_customer(campaign, user)
    subject = content.render(campaign.subject, customer)
    body = content.render(campaign.body, customer)
    if campaign.channel != Channel.EMAIL:
        label = Channel(campaign.channel).label
        subject = f"[Test {label}] {subject or campaign.name}"
    message = OutgoingMessage(
        key=f"test-{uuid.uuid4().hex}",
        channel=Channel.EMAIL,
        merchant=campaign.merchant.slug,
        campaign_id=None,
        customer="",
        to=address,
        subject=f"[Test] {subject}" if campaign.channel == Channel.EMAIL else subject,
        body=body,
    )
    try:
        with backend_for(Channel.EMAIL) as backend:
            backend.send(message)
    except ChannelError as error:
        raise ValidationError(TEST_FAILED.format(error=error)) from error
    return message
