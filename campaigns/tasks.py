"""Celery entry points of campaigns: thin, they take ids and call a service.

Without a broker they run in-process (the demo): a send then runs inside the request that
started it.
"""

from __future__ import annotations

from celery import shared_task

from campaigns.services import sending


@shared_task
def send_deliveries(campaign_id: int) -> int:
    """Send the campaign's due deliveries (any number of these may run at once); returns
    how many were sent by this run."""
    return sending.deliveries_send(campaign_id=campaign_id).sent


@shared_task
def dispatch() -> dict[str, int]:
    """Run by beat every minute: start due campaigns, resume, recover and finish sends."""
    return sending.campaigns_dispatch()


@shared_task
def send_webhooks(endpoint_id: int) -> int:
    """Post the endpoint's due webhook deliveries; returns how many were attempted."""
    from campaigns.services.webhooks import webhooks_send

    return webhooks_send(endpoint_id=endpoint_id)


@shared_task
def dispatch_webhooks() -> dict[str, int]:
    """Run by beat every minute: retries that are due, and deliveries whose sender died."""
    from campaigns.services.webhooks import webhooks_dispatch

    return webhooks_dispatch()
