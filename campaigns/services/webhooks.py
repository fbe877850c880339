"""Webhooks: endpoints (register, change, switch off and on, remove), the messages events
make, and their delivery with retries.

Events become messages in the transaction that wrote them (receivers of the signals the
segments and customers apps send, and `campaign_finish`), so a message exists if and only if
its change committed. Membership and score events are read back from their history rows
(`MembershipEvent`, `ScoreChange`) and batched: at most `WEBHOOK_BATCH_SIZE` events of one
type (and one segment) per message. Each message gets one `WebhookDelivery` per endpoint
subscribed to its type; after the commit a sender task per endpoint posts the due ones.

Delivery is at least once: a sender claims a delivery (`sending`), posts, and records the
answer; a sender that dies leaves the row to the dispatcher, which puts it back after the
lease, and it is posted again with the same `webhook-id`. Every event inside a message has a
stable `id` too, so a receiver can drop repeats whichever way they come.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import secrets
from collections.abc import Iterable, Sequence
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Count, QuerySet
from django.utils import timezone

from campaigns.models import (
    Campaign,
    Delivery,
    DeliveryStatus,
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
    WebhookEvent,
    WebhookMessage,
)
from campaigns.webhooks import (
    AddressRefused,
    Answer,
    check_url,
    post,
    retry_delay,
    signed_headers,
)
from customers.imports.report import ImportReport
from customers.models import Merchant, Role, ScoreChange, StaffMembership
from segments.models import MembershipEvent, MembershipEventKind, Segment

logger = logging.getLogger(__name__)

MSG_NO_EVENTS = "Choose at least one event."
MSG_UNKNOWN_EVENT = '"{event}" is not an event; choose from {choices}.'
MSG_DISABLED = "This endpoint is switched off: switch it on before resending."
MSG_DISABLED_REASON = "Switched off: every attempt failed for {hours} hours (the last: {error})."
#: A sender that has not recorded its attempt after this long died; the row goes back.
LEASE = dt.timedelta(minutes=5)
#: Deliveries one sender run posts at most (the dispatcher starts another for the rest).
SEND_LIMIT = 1000


# --- endpoints ----------------------------------------------------------------------------


def _clean(*, url: str, events: Iterable[str]) -> list[str]:
    errors: dict[str, list[str]] = {}
    try:
        check_url(url)
    except AddressRefused as error:
        errors["url"] = [str(error)]
    chosen = list(dict.fromkeys(events))
    unknown = [e for e in chosen if e not in WebhookEvent.values]
    if unknown:
        errors["events"] = [
            MSG_UNKNOWN_EVENT.format(event=unknown[0], choices=", ".join(WebhookEvent.values))
        ]
    elif not chosen:
        errors["events"] = [MSG_NO_EVENTS]
    if errors:
        raise ValidationError(errors)
    # Stored in the order of the choices, whatever the order given.
    return [e for e in WebhookEvent.values if e in chosen]


def endpoint_create(
    *,
    merchant: Merchant,
    url: str,
    events: Iterable[str],
    description: str = "",
    actor: Any = None,
) -> WebhookEndpoint:
    """Register an endpoint; its `secret` is shown to the caller once. Raises
    ValidationError by field (`url`: not http(s), not found, or a private address)."""
    chosen = _clean(url=url, events=events)
    return WebhookEndpoint.objects.create(
        merchant=merchant,
        url=url,
        events=chosen,
        description=description,
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
    )


def endpoint_update(
    *, endpoint: WebhookEndpoint, url: str, events: Iterable[str], description: str
) -> WebhookEndpoint:
    endpoint.events = _clean(url=url, events=events)
    endpoint.url, endpoint.description = url, description
    endpoint.save(update_fields=["url", "events", "description"])
    return endpoint


def endpoint_secret_rotate(*, endpoint: WebhookEndpoint) -> str:
    """A new signing secret (the old one stops at once); returns it to show once."""
    endpoint.secret = WebhookEndpoint._meta.get_field("secret").get_default()
    endpoint.save(update_fields=["secret"])
    return endpoint.secret


def endpoint_enable(*, endpoint: WebhookEndpoint) -> None:
    """Switch an endpoint on again: new events reach it, and what was waiting is tried now
    (messages older than `WEBHOOK_RETRY_HOURS` get one more attempt)."""
    now = timezone.now()
    with transaction.atomic():
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
            is_active=True, failing_since=None, disabled_at=None, disabled_reason=""
        )
        endpoint.deliveries.filter(status=WebhookDeliveryStatus.PENDING).update(next_attempt_at=now)
        transaction.on_commit(lambda: _kick([endpoint.pk]), robust=True)
    endpoint.refresh_from_db()


def endpoint_disable(*, endpoint: WebhookEndpoint, reason: str = "") -> None:
    """Switch an endpoint off: no new messages are made for it; waiting ones wait."""
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        is_active=False, disabled_at=timezone.now(), disabled_reason=reason[:300]
    )
    endpoint.refresh_from_db()


def endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    """Remove an endpoint and its delivery log (messages stay for the other endpoints)."""
    endpoint.delete()


# --- making messages ------------------------------------------------------------------------


def _subscribers(merchant_id: int, events: Iterable[str]) -> dict[str, list[int]]:
    """Active endpoints of the merchant by event: one small query on every write."""
    # TRICKY: str() of each: a TextChoices member hashes by its name, not its value, so a
    # set or dict of members never matches the plain strings stored in `events`.
    wanted = {str(e) for e in events}
    found: dict[str, list[int]] = {}
    for pk, subscribed in WebhookEndpoint.objects.filter(
        merchant_id=merchant_id, is_active=True
    ).values_list("pk", "events"):
        for event in set(subscribed) & wanted:
            found.setdefault(event, []).append(pk)
    return found


def _envelope(event: str, data: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    # The Standard Webhooks payload structure: type, timestamp, data.
    return {"type": event, "timestamp": _iso(now), "data": data}


def _merchant_slug(merchant_id: int) -> str:
    return Merchant.objects.values_list("slug", flat=True).get(pk=merchant_id)


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def messages_make(
    *,
    merchant_id: int,
    event: str,
    datas: Sequence[tuple[dict[str, Any], int]],
    endpoint_ids: Sequence[int],
    now: dt.datetime | None = None,
) -> list[WebhookMessage]:
    """One message per `(data, number of events)` and a delivery of each to each endpoint,
    in the caller's transaction; the senders start after the commit."""
    if not datas or not endpoint_ids:
        return []
    now = now or timezone.now()
    messages = WebhookMessage.objects.bulk_create(
        [
            WebhookMessage(
                merchant_id=merchant_id,
                key="msg_" + secrets.token_hex(12),
                event=event,
                payload=_envelope(event, data, now),
                size=size,
                created_at=now,
            )
            for data, size in datas
        ]
    )
    if any(m.pk is None for m in messages):  # pragma: no cover - both databases return ids
        messages = list(WebhookMessage.objects.filter(key__in=[m.key for m in messages]))
    WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(endpoint_id=e, message=m, next_attempt_at=now, created_at=now)
            for m in messages
            for e in endpoint_ids
        ],
        batch_size=1000,
    )
    ids = list(endpoint_ids)
    transaction.on_commit(lambda: _kick(ids), robust=True)
    return messages


def _batches(rows: Sequence[Any]) -> list[Sequence[Any]]:
    size = max(settings.WEBHOOK_BATCH_SIZE, 1)
    return [rows[start : start + size] for start in range(0, len(rows), size)]


def _parts(items: Sequence[Any], key: str, extra: dict[str, Any]) -> list[tuple[dict, int]]:
    batches = _batches(items)
    return [
        ({**extra, "part": i, "parts": len(batches), key: list(batch)}, len(batch))
        for i, batch in enumerate(batches, start=1)
    ]


_MEMBERSHIP_EVENTS = {
    MembershipEventKind.ENTRY: WebhookEvent.SEGMENT_ENTERED.value,
    MembershipEventKind.EXIT: WebhookEvent.SEGMENT_EXITED.value,
}


def on_memberships_changed(
    sender: Any,
    *,
    merchant_id: int,
    segment_ids: Sequence[int],
    occurred_at: dt.datetime,
    **kwargs: Any,
) -> None:
    """`segment.entered` / `segment.exited` messages of one membership write: per segment
    and kind, batches of `WEBHOOK_BATCH_SIZE` events."""
    subscribers = _subscribers(merchant_id, _MEMBERSHIP_EVENTS.values())
    if not subscribers:
        return
    kinds = [k for k, e in _MEMBERSHIP_EVENTS.items() if e in subscribers]
    merchant_slug = _merchant_slug(merchant_id)
    segments = dict(
        (pk, {"slug": slug, "name": name})
        for pk, slug, name in Segment.objects.filter(pk__in=segment_ids).values_list(
            "pk", "slug", "name"
        )
    )
    rows = (
        MembershipEvent.objects.filter(
            segment_id__in=segment_ids, occurred_at=occurred_at, kind__in=kinds
        )
        .order_by("segment_id", "kind", "pk")
        .values_list("pk", "segment_id", "kind", "customer__external_id", "reason")
    )
    grouped: dict[tuple[int, str], list[dict[str, Any]]] = {}
    when = _iso(occurred_at)
    for pk, segment_id, kind, external_id, reason in rows:
        grouped.setdefault((segment_id, kind), []).append(
            {"id": f"sev_{pk}", "customer": external_id, "occurred_at": when, "reason": reason}
        )
    for (segment_id, kind), events in grouped.items():
        event = _MEMBERSHIP_EVENTS[MembershipEventKind(kind)]
        extra = {"merchant": merchant_slug, "segment": segments.get(segment_id)}
        messages_make(
            merchant_id=merchant_id,
            event=event,
            datas=_parts(events, "events", extra),
            endpoint_ids=subscribers[event],
        )


_SCORE_EVENTS = {
    "lifecycle": WebhookEvent.LIFECYCLE_CHANGED.value,
    "tier": WebhookEvent.TIER_CHANGED.value,
}


def on_score_changes(
    sender: Any,
    *,
    merchant_id: int,
    changed_at: dt.datetime,
    kinds: Iterable[str],
    **kwargs: Any,
) -> None:
    """`customer.lifecycle_changed` / `customer.tier_changed` messages of one score write."""
    wanted = {_SCORE_EVENTS[k] for k in kinds if k in _SCORE_EVENTS}
    subscribers = _subscribers(merchant_id, wanted)
    if not subscribers:
        return
    merchant_slug = _merchant_slug(merchant_id)
    for kind, event in _SCORE_EVENTS.items():
        if event not in subscribers:
            continue
        changes = [
            {
                "id": f"scc_{pk}",
                "customer": external_id,
                "from": from_value or None,
                "to": to_value or None,
                "changed_at": _iso(at),
                "reason": reason,
            }
            for pk, external_id, from_value, to_value, at, reason in ScoreChange.objects.filter(
                merchant_id=merchant_id, kind=kind, changed_at=changed_at
            )
            .order_by("pk")
            .values_list(
                "pk", "customer__external_id", "from_value", "to_value", "changed_at", "reason"
            )
        ]
        if changes:
            messages_make(
                merchant_id=merchant_id,
                event=event,
                datas=_parts(changes, "changes", {"merchant": merchant_slug}),
                endpoint_ids=subscribers[event],
            )


def on_import_completed(
    sender: Any, *, merchant_id: int, report: ImportReport, **kwargs: Any
) -> None:
    """One `import.completed` message: the counts per file."""
    subscribers = _subscribers(merchant_id, [WebhookEvent.IMPORT_COMPLETED])
    if not subscribers:
        return
    merchant_slug = _merchant_slug(merchant_id)
    files = {
        name: {
            "rows": c.rows,
            "created": c.created,
            "updated": c.updated,
            "unchanged": c.unchanged,
            **({"lines_written": c.lines_written} if c.is_items else {}),
        }
        for name, c in report.counts.items()
    }
    data = {
        "merchant": merchant_slug,
        "id": f"imp_{secrets.token_hex(8)}",
        "files": files,
        "tags_created": report.tags_created,
        "tiers_created": report.tiers_created,
    }
    messages_make(
        merchant_id=merchant_id,
        event=WebhookEvent.IMPORT_COMPLETED,
        datas=[(data, 1)],
        endpoint_ids=subscribers[WebhookEvent.IMPORT_COMPLETED.value],
    )


def campaign_completed(*, campaign: Campaign) -> None:
    """One `campaign.completed` message, in `campaign_finish`'s transaction."""
    subscribers = _subscribers(campaign.merchant_id, [WebhookEvent.CAMPAIGN_COMPLETED])
    if not subscribers:
        return
    counts = dict(
        Delivery.objects.filter(campaign=campaign)
        .values_list("status")
        .annotate(n=Count("pk"))
        .values_list("status", "n")
    )
    data = {
        "merchant": campaign.merchant.slug,
        "campaign": {
            "id": campaign.pk,
            "name": campaign.name,
            "channel": campaign.channel,
            "audience": sum(counts.values()),
            "sent": counts.get(DeliveryStatus.SENT, 0),
            "skipped": counts.get(DeliveryStatus.SKIPPED, 0),
            "failed": counts.get(DeliveryStatus.FAILED, 0),
            "started_at": _iso(campaign.started_at) if campaign.started_at else None,
            "finished_at": _iso(campaign.finished_at) if campaign.finished_at else None,
        },
    }
    messages_make(
        merchant_id=campaign.merchant_id,
        event=WebhookEvent.CAMPAIGN_COMPLETED,
        datas=[(data, 1)],
        endpoint_ids=subscribers[WebhookEvent.CAMPAIGN_COMPLETED.value],
    )


# --- sending --------------------------------------------------------------------------------


def _kick(endpoint_ids: Iterable[int]) -> None:
    from campaigns.tasks import send_webhooks

    for endpoint_id in sorted(set(endpoint_ids)):
        send_webhooks.delay(endpoint_id)


def message_body(message: WebhookMessage) -> bytes:
    """The exact bytes signed and sent (the same on every attempt)."""
    return json.dumps(message.payload, ensure_ascii=False, separators=(",", ":")).encode()


def _claim(delivery_id: int, now: dt.datetime) -> bool:
    # A conditional UPDATE: of two senders that picked the same row, one gets it.
    return bool(
        WebhookDelivery.objects.filter(
            pk=delivery_id, status=WebhookDeliveryStatus.PENDING, next_attempt_at__lte=now
        ).update(status=WebhookDeliveryStatus.SENDING, claimed_at=now)
    )


def delivery_attempt(*, delivery_id: int, now: dt.datetime | None = None) -> WebhookDelivery | None:
    """Claim a due delivery, post it, record how it went. None when another sender has it
    or it is not due."""
    given = now
    now = now or timezone.now()
    if not _claim(delivery_id, now):
        return None
    delivery = WebhookDelivery.objects.select_related("endpoint", "message").get(pk=delivery_id)
    endpoint, message = delivery.endpoint, delivery.message
    body = message_body(message)
    timestamp = int(timezone.now().timestamp())
    answer = post(endpoint.url, body, signed_headers(endpoint.secret, message.key, timestamp, body))
    return _record(delivery, answer, given or timezone.now())


def _record(delivery: WebhookDelivery, answer: Answer, now: dt.datetime) -> WebhookDelivery:
    endpoint, message = delivery.endpoint, delivery.message
    delivery.attempts += 1
    delivery.last_attempt_at = now
    delivery.response_status = answer.status
    delivery.duration_ms = answer.duration_ms
    delivery.error = answer.error
    delivery.claimed_at = None
    if answer.ok:
        delivery.status = WebhookDeliveryStatus.SUCCEEDED
        delivery.delivered_at = now
    elif now - message.created_at >= dt.timedelta(hours=settings.WEBHOOK_RETRY_HOURS):
        delivery.status = WebhookDeliveryStatus.FAILED
    else:
        delivery.status = WebhookDeliveryStatus.PENDING
        delivery.next_attempt_at = now + retry_delay(delivery.attempts)
    with transaction.atomic():
        delivery.save(
            update_fields=[
                "attempts",
                "last_attempt_at",
                "response_status",
                "duration_ms",
                "error",
                "claimed_at",
                "status",
                "delivered_at",
                "next_attempt_at",
            ]
        )
        if answer.ok:
            if endpoint.failing_since is not None:
                WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=None)
        else:
            _failed(endpoint, answer, now)
    return delivery


def _failed(endpoint: WebhookEndpoint, answer: Answer, now: dt.datetime) -> None:
    """Note the failure; an endpoint failing for `WEBHOOK_DISABLE_AFTER_HOURS` is switched
    off and its owners are told."""
    WebhookEndpoint.objects.filter(pk=endpoint.pk, failing_since__isnull=True).update(
        failing_since=now
    )
    since = WebhookEndpoint.objects.values_list("failing_since", flat=True).get(pk=endpoint.pk)
    hours = settings.WEBHOOK_DISABLE_AFTER_HOURS
    if since is None or now - since < dt.timedelta(hours=hours) or not endpoint.is_active:
        return
    reason = MSG_DISABLED_REASON.format(hours=hours, error=answer.error or "no answer")
    switched = WebhookEndpoint.objects.filter(pk=endpoint.pk, is_active=True).update(
        is_active=False, disabled_at=now, disabled_reason=reason[:300]
    )
    if switched:
        transaction.on_commit(lambda: _tell_owners(endpoint, reason), robust=True)


def _tell_owners(endpoint: WebhookEndpoint, reason: str) -> None:
    emails = list(
        StaffMembership.objects.filter(merchant_id=endpoint.merchant_id, role=Role.OWNER)
        .exclude(user__email="")
        .values_list("user__email", flat=True)
    )
    logger.warning("Webhook endpoint %s switched off: %s", endpoint.pk, reason)
    if emails:
        send_mail(
            subject=f"Webhook endpoint switched off: {endpoint.url}",
            message=(
                f"{reason}\n\nNew events are not sent to {endpoint.url} until it is switched "
                "on again on the portal's Webhooks page; what was waiting is kept and tried "
                "again then."
            ),
            from_email=None,
            recipient_list=emails,
            fail_silently=True,
        )


def due_deliveries(
    *, endpoint_id: int | None = None, now: dt.datetime | None = None
) -> QuerySet[WebhookDelivery]:
    now = now or timezone.now()
    due = WebhookDelivery.objects.filter(
        status=WebhookDeliveryStatus.PENDING, next_attempt_at__lte=now, endpoint__is_active=True
    )
    if endpoint_id is not None:
        due = due.filter(endpoint_id=endpoint_id)
    return due.order_by("next_attempt_at", "pk")


def webhooks_send(*, endpoint_id: int, now: dt.datetime | None = None) -> int:
    """Post the endpoint's due deliveries, oldest first, up to `SEND_LIMIT`; returns how
    many were attempted. An endpoint that stops answering is left for the retry schedule
    after its first failure in this run (the rest wait their turn, not a timeout each)."""
    attempted = 0
    ids = list(due_deliveries(endpoint_id=endpoint_id, now=now).values_list("pk", flat=True))
    for delivery_id in ids[:SEND_LIMIT]:
        delivery = delivery_attempt(delivery_id=delivery_id, now=now)
        if delivery is None:
            continue
        attempted += 1
        if delivery.status != WebhookDeliveryStatus.SUCCEEDED:
            break
    return attempted


def delivery_resend(*, delivery: WebhookDelivery) -> None:
    """Send a message again (same `webhook-id`), whatever its status, now."""
    if not delivery.endpoint.is_active:
        raise ValidationError(MSG_DISABLED)
    endpoint_id = delivery.endpoint_id
    with transaction.atomic():
        WebhookDelivery.objects.filter(pk=delivery.pk).exclude(
            status=WebhookDeliveryStatus.SENDING
        ).update(status=WebhookDeliveryStatus.PENDING, next_attempt_at=timezone.now())
        transaction.on_commit(lambda: _kick([endpoint_id]), robust=True)


def webhooks_dispatch(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Run by beat every minute: put back deliveries whose sender died, and start a sender
    for every endpoint with something due (retries, or a send whose task was lost)."""
    now = now or timezone.now()
    recovered = WebhookDelivery.objects.filter(
        status=WebhookDeliveryStatus.SENDING, claimed_at__lt=now - LEASE
    ).update(status=WebhookDeliveryStatus.PENDING, claimed_at=None, next_attempt_at=now)
    endpoints = list(
        due_deliveries(now=now).order_by().values_list("endpoint_id", flat=True).distinct()
    )
    _kick(endpoints)
    return {"recovered": recovered, "endpoints": len(endpoints)}
