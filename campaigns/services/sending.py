"""Sending a campaign: the audience snapshot, delivery in batches, finishing, the dispatcher.

The guarantees, and where each comes from:

- One delivery row per campaign and customer (a unique constraint), written once, when the
  send starts (`campaign_start`, under a lock on the campaign row: a second start, from an
  overlapping scheduler tick or a double click, finds the campaign already sending and
  does nothing).
- A message is sent only by the sender that moved its row from `queued` to `sending` (one
  UPDATE ... WHERE status = 'queued'; PostgreSQL senders lock with SKIP LOCKED so several
  share a queue without waiting), and it is recorded `sent` on its own row, in its own
  commit, as soon as the channel has it (`ChannelBackend.deliver`; over SMTP right after
  the final "." is written, before the server's answer). A retried task, a second sender
  or a worker killed in the middle finds every message the channel has marked `sent`.
- Rows left in `sending` longer than the lease (`lease()`) belonged to a sender that died:
  the dispatcher requeues them. A worker killed in the instant between handing a message
  over and recording it leaves that one message to be sent again, with the same key (the
  Message-ID, the HTTP idempotency key, the file's name), by which the provider or mail
  system drops the repeat. Exactly once is not possible without the receiver's help;
  recording before handing over instead would lose such a message, silently.
- A channel error that may pass (a server down, a timeout, HTTP 5xx or 429) puts the row
  back in the queue with a growing delay (`backoff`), up to `MAX_ATTEMPTS`; a permanent one
  (a refused address, HTTP 4xx) fails the row with the error.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Case as SqlCase
from django.db.models import DateTimeField, F, IntegerField, Max, Value
from django.db.models import When as SqlWhen
from django.db.models.functions import Cast
from django.utils import timezone

from campaigns import audience, content
from campaigns.channels import ChannelBackend, ChannelError, OutgoingMessage, backend_for
from campaigns.models import (
    Campaign,
    CampaignStatus,
    ContactRules,
    Delivery,
    DeliveryStatus,
)
from campaigns.services.campaigns import check_content
from campaigns.services.webhooks import campaign_completed
from customers.models import Customer
from customers.services import customers_update
from segments.engine import evaluation_settings

logger = logging.getLogger(__name__)

#: Rows a sender claims at a time.
BATCH_SIZE = 200


def lease() -> dt.timedelta:
    """A row left in `sending` longer than this was interrupted (its sender died) and is
    requeued (setting CAMPAIGN_DELIVERY_LEASE_SECONDS, default 10 minutes). A sender that
    has held a claim for a third of it gives the rest back and claims anew, so a slow
    channel never outlives its lease."""
    return dt.timedelta(seconds=settings.CAMPAIGN_DELIVERY_LEASE_SECONDS)


MAX_ATTEMPTS = 5
#: Senders started per campaign (more share the queue; the dispatcher adds more each tick).
SENDERS = 2

NOT_STARTABLE = 'The campaign "{name}" cannot be sent: it is {status}.'
NO_AUDIENCE_SEGMENTS = 'The campaign "{name}" has no segment to send to.'
BAD_CONTENT = 'The campaign "{name}" cannot be sent as written: {errors}'
INACTIVE_SEGMENTS = 'The campaign "{name}" sends to inactive segments: {names}.'


class SendError(ValueError):
    """A campaign that cannot be sent now; the message says why."""


def backoff(attempts: int) -> dt.timedelta:
    """The wait after a failed attempt: 30 s, 2 min, 8 min, 32 min."""
    return dt.timedelta(seconds=30 * 4 ** max(attempts - 1, 0))


# --- starting: the snapshot --------------------------------------------------------------


def campaign_start(
    *,
    campaign_id: int,
    user_id: int | None = None,
    now: dt.datetime | None = None,
    senders: bool = True,
) -> int:
    """Start sending: snapshot the audience as one delivery row per member (queued, or
    skipped with the reason; SMS and push in quiet hours wait for the window) in one INSERT
    ... SELECT, mark the campaign `sending`, and after the commit start the senders.
    Returns the audience size; 0 when the campaign had already started (nothing is done).
    `senders=False` leaves the queue to the dispatcher (the demo data, benchmarks).
    Raises SendError for a campaign that is not a draft or scheduled, or whose segments
    cannot be used."""
    now = now or timezone.now()
    with transaction.atomic():
        campaign = (
            Campaign.objects.select_for_update().select_related("merchant").get(pk=campaign_id)
        )
        if campaign.status in (CampaignStatus.SENDING, CampaignStatus.SENT):
            return 0
        if not campaign.is_editable:
            raise SendError(NOT_STARTABLE.format(name=campaign.name, status=campaign.status))
        included, _ = audience.segment_ids(campaign)
        if not included:
            raise SendError(NO_AUDIENCE_SEGMENTS.format(name=campaign.name))
        inactive = list(
            campaign.targeting.filter(exclude=False, segment__is_active=False).values_list(
                "segment__name", flat=True
            )
        )
        if inactive:
            raise SendError(
                INACTIVE_SEGMENTS.format(name=campaign.name, names=", ".join(sorted(inactive)))
            )
        try:
            check_content(campaign)  # the form checks it; a schedule may outlive a change
        except ValidationError as error:
            raise SendError(
                BAD_CONTENT.format(name=campaign.name, errors="; ".join(error.messages))
            ) from error
        rules = audience.contact_rules_of(campaign.merchant_id)
        waits = audience.send_time(
            channel=campaign.channel, rules=rules, tz=campaign.merchant.tzinfo, now=now
        )
        with evaluation_settings():
            size = _snapshot(campaign, now=now, not_before=waits, rules=rules)
        campaign.status = CampaignStatus.SENDING
        campaign.send_error = ""
        campaign.started_at = now
        campaign.audience_size = size
        if user_id is not None:
            campaign.sent_by_id = user_id
        campaign.save(
            update_fields=[
                "status",
                "send_error",
                "started_at",
                "audience_size",
                "sent_by",
                "updated_at",
            ]
        )
        if senders:
            transaction.on_commit(lambda: _start_senders(campaign.pk, eta=waits))
    return size


def _snapshot(
    campaign: Campaign, *, now: dt.datetime, not_before: dt.datetime | None, rules: ContactRules
) -> int:
    """INSERT one delivery per member from the same expression as the preview."""
    rows = audience.with_reason(campaign, now=now, rules=rules).values_list(
        Value(campaign.pk, output_field=IntegerField()),
        "pk",
        Value(campaign.channel),
        SqlCase(
            SqlWhen(reason="", then=Value(DeliveryStatus.QUEUED.value)),
            default=Value(DeliveryStatus.SKIPPED.value),
        ),
        "reason",
        Value(""),
        Value(0, output_field=IntegerField()),
        # Held-out members keep the time they would have been sent: their results window.
        Cast(
            SqlCase(
                SqlWhen(reason__in=["", "holdout"], then=Value(not_before)),
                default=Value(None),
            ),
            DateTimeField(),
        ),
        Value(now, output_field=DateTimeField()),
    )
    sql, params = rows.query.sql_with_params()
    table = Delivery._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (campaign_id, customer_id, channel, status, skip_reason, "
            f"error, attempts, not_before, created_at) {sql} "
            "ON CONFLICT (campaign_id, customer_id) DO NOTHING",
            params,
        )
        return max(cursor.rowcount, 0)


def _start_senders(
    campaign_id: int, *, eta: dt.datetime | None = None, count: int = SENDERS
) -> None:
    from campaigns import tasks

    for _ in range(count):
        if eta is None:
            tasks.send_deliveries.delay(campaign_id)
        else:
            tasks.send_deliveries.apply_async((campaign_id,), eta=eta)


# --- sending -----------------------------------------------------------------------------


@dataclass
class SendOutcome:
    sent: int = 0
    failed: int = 0
    retried: int = 0


def _claim(campaign_id: int, *, now: dt.datetime, limit: int) -> list[int]:
    """Move up to `limit` due queued rows to `sending` (committed) and return the ids of
    the rows this call moved."""
    with transaction.atomic():
        due = Delivery.objects.filter(
            campaign_id=campaign_id, status=DeliveryStatus.QUEUED
        ).exclude(not_before__gt=now)
        if connection.features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True)
        ids = list(due.order_by("pk").values_list("pk", flat=True)[:limit])
        if not ids:
            return []
        # The claim's time is its token: without row locks (SQLite) another sender may have
        # read the same ids, and only the rows this UPDATE moved are this sender's.
        claim = now + dt.timedelta(microseconds=secrets.randbelow(1000))
        Delivery.objects.filter(pk__in=ids, status=DeliveryStatus.QUEUED).update(
            status=DeliveryStatus.SENDING, claimed_at=claim, attempts=F("attempts") + 1
        )
        return list(
            Delivery.objects.filter(
                pk__in=ids, status=DeliveryStatus.SENDING, claimed_at=claim
            ).values_list("pk", flat=True)
        )


def _release(ids: list[int], *, not_before: dt.datetime | None, undo_attempt: bool) -> None:
    """Put claimed rows that were not tried (or failed retryably) back in the queue."""
    if not ids:
        return
    Delivery.objects.filter(pk__in=ids, status=DeliveryStatus.SENDING).update(
        status=DeliveryStatus.QUEUED,
        not_before=not_before,
        claimed_at=None,
        attempts=F("attempts") - 1 if undo_attempt else F("attempts"),
    )


_RECORD_SENT = (
    f"UPDATE {Delivery._meta.db_table} SET status = 'sent', sent_at = %s, error = '' "
    "WHERE id = %s AND status = 'sending'"
)


def _message(campaign: Campaign, delivery: Delivery, customer: Customer) -> OutgoingMessage:
    to = {"email": customer.email, "sms": customer.phone}.get(
        campaign.channel, customer.external_id
    )
    return OutgoingMessage(
        key=f"c{campaign.pk}-d{delivery.pk}",
        channel=campaign.channel,
        merchant=campaign.merchant.slug,
        campaign_id=campaign.pk,
        customer=customer.external_id,
        to=to,
        subject=content.render(campaign.subject, customer),
        body=content.render(campaign.body, customer),
    )


def _send_batch(
    campaign: Campaign, backend: ChannelBackend, ids: list[int], claimed: float
) -> SendOutcome:
    outcome = SendOutcome()
    rows = list(
        Delivery.objects.filter(pk__in=ids, status=DeliveryStatus.SENDING)
        .select_related("customer", "customer__tier", "customer__home_branch")
        .order_by("pk")
    )
    for position, delivery in enumerate(rows):
        if time.monotonic() - claimed > lease().total_seconds() / 3:
            _release([d.pk for d in rows[position:]], not_before=None, undo_attempt=True)
            break
        customer = delivery.customer
        customer.merchant = campaign.merchant
        recorded = False

        def record(pk: int = delivery.pk) -> None:
            # Its own commit, at the backend's point of no return: see the module docstring.
            # One statement per message, so written without the ORM's overhead.
            nonlocal recorded
            with connection.cursor() as cursor:
                cursor.execute(_RECORD_SENT, [timezone.now(), pk])
            recorded = True

        try:
            backend.deliver(_message(campaign, delivery, customer), record)
        except (ChannelError, content.ContentError) as error:
            # Recorded, then the last step failed: the row is this sender's to change back.
            mine = Delivery.objects.filter(
                pk=delivery.pk,
                status=DeliveryStatus.SENT if recorded else DeliveryStatus.SENDING,
            )
            retry = isinstance(error, ChannelError) and error.retryable
            if retry and delivery.attempts < MAX_ATTEMPTS:
                wait = timezone.now() + backoff(delivery.attempts)
                mine.update(
                    status=DeliveryStatus.QUEUED, not_before=wait, claimed_at=None, sent_at=None
                )
                # The channel is likely down for the rest too: give them back, try later.
                _release([d.pk for d in rows[position + 1 :]], not_before=wait, undo_attempt=True)
                outcome.retried += 1
                logger.warning("campaign %s: %s; retrying after %s", campaign.pk, error, wait)
                break
            mine.update(
                status=DeliveryStatus.FAILED, error=str(error)[:2000], claimed_at=None, sent_at=None
            )
            outcome.failed += 1
            continue
        outcome.sent += 1
    return outcome


def _async_commits(on: bool) -> None:
    # TRICKY: each message's outcome is its own commit; waiting for the WAL flush of each
    # would cap a sender at the disk's flush rate. A worker that dies loses nothing
    # committed this way; only a database crash may lose the last moment's marks (those
    # rows are then requeued as interrupted, see the module docstring).
    if connection.vendor == "postgresql" and not connection.in_atomic_block:
        with connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit TO " + ("off" if on else "DEFAULT"))


def deliveries_send(*, campaign_id: int, max_batches: int | None = None) -> SendOutcome:
    """Send the campaign's due queued deliveries, a claimed batch at a time, until none is
    due (or `max_batches`); then finish the campaign when nothing is left. SMS and push in
    quiet hours are left to wait for the window. Safe to run in any number of workers at
    once and to run again: a row is sent only by the sender that claimed it."""
    total = SendOutcome()
    campaign = Campaign.objects.select_related("merchant").get(pk=campaign_id)
    if campaign.status != CampaignStatus.SENDING:
        return total
    rules = audience.contact_rules_of(campaign.merchant_id)
    batches = 0
    _async_commits(True)
    try:
        with backend_for(campaign.channel) as backend:
            while max_batches is None or batches < max_batches:
                now = timezone.now()
                waits = audience.send_time(
                    channel=campaign.channel, rules=rules, tz=campaign.merchant.tzinfo, now=now
                )
                if waits is not None:
                    _postpone(campaign_id, waits)
                    break
                ids = _claim(campaign_id, now=now, limit=BATCH_SIZE)
                if not ids:
                    break
                batches += 1
                outcome = _send_batch(campaign, backend, ids, time.monotonic())
                total.sent += outcome.sent
                total.failed += outcome.failed
                total.retried += outcome.retried
                if outcome.retried:
                    break
    except ChannelError as error:
        # The backend could not even be set up (not configured): every due row fails.
        _fail_all(campaign_id, str(error), retryable=error.retryable)
    finally:
        _async_commits(False)
    campaign_finish(campaign_id=campaign_id)
    return total


def _postpone(campaign_id: int, until: dt.datetime) -> None:
    Delivery.objects.filter(campaign_id=campaign_id, status=DeliveryStatus.QUEUED).exclude(
        not_before__gte=until
    ).update(not_before=until)


def _fail_all(campaign_id: int, error: str, *, retryable: bool) -> None:
    queued = Delivery.objects.filter(campaign_id=campaign_id, status=DeliveryStatus.QUEUED)
    if retryable:
        queued.update(not_before=timezone.now() + backoff(1))
    else:
        queued.update(status=DeliveryStatus.FAILED, error=error[:2000])


def campaign_finish(*, campaign_id: int) -> bool:
    """Mark a sending campaign `sent` once no delivery is queued or being sent, and set
    `last_contacted_at` of every customer it reached, in one statement announced as one
    change (merchant-level beyond a few thousand customers: the segments refresh once, not
    once per customer). Returns whether it finished now (only one caller does)."""
    with transaction.atomic():
        campaign = (
            Campaign.objects.select_for_update().select_related("merchant").get(pk=campaign_id)
        )
        if campaign.status != CampaignStatus.SENDING:
            return False
        pending = Delivery.objects.filter(
            campaign_id=campaign_id,
            status__in=[DeliveryStatus.QUEUED, DeliveryStatus.SENDING],
        )
        if pending.exists():
            return False
        reached = Delivery.objects.filter(campaign_id=campaign_id, status=DeliveryStatus.SENT)
        last = reached.aggregate(at=Max("sent_at"))["at"]
        if last is not None:
            customers_update(
                merchant=campaign.merchant,
                customer_ids=reached.values("customer_id"),
                last_contacted_at=last,
            )
        campaign.status = CampaignStatus.SENT
        campaign.finished_at = timezone.now()
        campaign.save(update_fields=["status", "finished_at", "updated_at"])
        campaign_completed(campaign=campaign)
    return True


# --- the dispatcher ----------------------------------------------------------------------


def deliveries_recover(*, now: dt.datetime | None = None) -> int:
    """Requeue rows left in `sending` longer than the lease (their sender was killed); they
    are sent again with the same key. Returns how many."""
    now = now or timezone.now()
    return Delivery.objects.filter(
        status=DeliveryStatus.SENDING, claimed_at__lt=now - lease()
    ).update(status=DeliveryStatus.QUEUED, claimed_at=None)


def campaign_resume(*, campaign_id: int) -> int:
    """Support's "resume": requeue the campaign's rows whose sender died (claimed longer ago
    than the lease) and start a sender if it is sending. Returns how many were requeued."""
    requeued = Delivery.objects.filter(
        campaign_id=campaign_id,
        status=DeliveryStatus.SENDING,
        claimed_at__lt=timezone.now() - lease(),
    ).update(status=DeliveryStatus.QUEUED, claimed_at=None)
    if Campaign.objects.filter(pk=campaign_id, status=CampaignStatus.SENDING).exists():
        transaction.on_commit(lambda: _start_senders(campaign_id, count=1))
    return requeued


def campaigns_dispatch(*, now: dt.datetime | None = None) -> dict[str, int]:
    """The scheduler's tick (every minute): start the scheduled campaigns that are due,
    requeue interrupted deliveries, start senders for sending campaigns with due rows, and
    finish the ones with nothing left. Overlapping ticks are harmless (see the module
    docstring). Returns what it did, by kind."""
    now = now or timezone.now()
    started = 0
    for campaign_id in Campaign.objects.filter(
        status=CampaignStatus.SCHEDULED, send_at__lte=now
    ).values_list("pk", flat=True):
        try:
            campaign_start(campaign_id=campaign_id, now=now)
            started += 1
        except SendError as error:
            # Back to draft, with the reason on its page (a segment made inactive since).
            logger.error("scheduled campaign %s not started: %s", campaign_id, error)
            Campaign.objects.filter(pk=campaign_id, status=CampaignStatus.SCHEDULED).update(
                status=CampaignStatus.DRAFT, send_error=str(error)
            )
    recovered = deliveries_recover(now=now)
    resumed = 0
    finished = 0
    for campaign_id in Campaign.objects.filter(status=CampaignStatus.SENDING).values_list(
        "pk", flat=True
    ):
        due = Delivery.objects.filter(
            campaign_id=campaign_id, status=DeliveryStatus.QUEUED
        ).exclude(not_before__gt=now)
        if due.exists():
            _start_senders(campaign_id, count=1)
            resumed += 1
        elif campaign_finish(campaign_id=campaign_id):
            finished += 1
    return {"started": started, "recovered": recovered, "resumed": resumed, "finished": finished}
