"""Reliability check of campaign delivery: a worker killed in the middle of a send.

    DJANGO_DEBUG=1 .venv/bin/python bench/campaign_reliability.py [--customers 10000]
        [--kill-after 3000] [--database-url postgres://postgres@127.0.0.1:5432/sp_campaign_rel]
        [--broker redis://127.0.0.1:6379/14]

Recreates its own PostgreSQL database, makes a merchant with `--customers` customers (5 %
without email consent) in one manual segment, starts a real local SMTP server (aiosmtpd, in
this process) and a real Celery worker (`-c 2`, prefork) on Redis, sends an email campaign to
the segment, kills the worker's whole process group with SIGKILL once `--kill-after`
messages are recorded sent, starts a new worker, and plays the beat's part (the dispatcher
every 3 s) until the campaign is finished. Then it checks:

- every eligible customer received the message, and one message (one Message-ID) each;
  nobody else received one; repeats of a message (the same Message-ID: a worker killed in
  the instant between handing it over and recording it) are counted. The SMTP server
  processes what it received before a connection ended, as a mail server does (see
  `patient_controller`);
- the deliveries add up: sent + skipped + failed = the audience, nothing left queued or
  sending, sent = the distinct messages the server accepted, skipped = the customers
  without consent;
- the results page's counts (`campaigns.results.campaign_results`) say the same.

Prints a summary, writes bench/out/campaign_reliability.json, and exits 1 when a check fails.
The lease after which an interrupted delivery is requeued is set to 15 s here (10 min by
default) so the run takes a minute, not ten.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/sp_campaign_rel"
DEFAULT_BROKER = "redis://127.0.0.1:6379/14"


class Inbox:
    """The SMTP server's side: every accepted message's recipients and Message-ID."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: list[tuple[str, str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        headers = BytesHeaderParser().parsebytes(envelope.original_content or envelope.content)
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.received.append((rcpt.lower(), str(headers.get("Message-ID", ""))))
        return "250 OK"


def patient_controller(handler: Any, port: int) -> Any:
    """aiosmtpd's Controller with a server that processes what a client sent before it hung
    up, as a mail server does: aiosmtpd itself cancels the session as soon as the connection
    ends, dropping a message whose final "." arrived in the same instant (exactly what a
    worker killed just after sending that "." leaves), which would count as lost here
    although a real server accepts it."""
    import asyncio

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP

    class PatientSMTP(SMTP):
        def eof_received(self) -> bool | None:
            # The reader gets the end of the stream after the data already buffered.
            return asyncio.StreamReaderProtocol.eof_received(self)

        def connection_lost(self, error: Exception | None) -> None:
            if self._timeout_handle is not None:
                self._timeout_handle.cancel()
            asyncio.StreamReaderProtocol.connection_lost(self, error)

    class PatientController(Controller):
        def factory(self) -> SMTP:
            return PatientSMTP(self.handler, **self.SMTP_kwargs)

    return PatientController(handler, hostname="127.0.0.1", port=port)


def recreate_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "-c", "2", "-l", "warning"],
        cwd=ROOT,
        env=env,
        start_new_session=True,  # its own process group: SIGKILL takes the children too
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--kill-after", type=int, default=3_000)
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--broker", default=DEFAULT_BROKER)
    parser.add_argument("--timeout", type=int, default=600)
    args = parser.parse_args()

    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd: one line per command
    # A session whose client hung up ends with an unread exception: expected here.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    inbox = Inbox()
    with socket.socket() as probe:  # a free port (the controller checks it by connecting)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    smtp = patient_controller(inbox, port)
    smtp.start()

    env = {
        **os.environ,
        "DJANGO_DEBUG": "1",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": args.database_url,
        "CELERY_BROKER_URL": args.broker,
        "CAMPAIGN_EMAIL_BACKEND": "smtp",
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(port),
        "CAMPAIGN_FROM_EMAIL": "news@bench.example",
        "CAMPAIGN_DELIVERY_LEASE_SECONDS": "15",
    }
    os.environ.update(env)
    recreate_database(args.database_url)
    import redis

    redis.Redis.from_url(args.broker).flushdb()

    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import transaction
    from django.utils import timezone

    call_command("migrate", verbosity=0)

    from campaigns.models import Campaign, CampaignStatus, Delivery
    from campaigns.results import campaign_results
    from campaigns.services.campaigns import campaign_save
    from campaigns.services.sending import campaign_start, campaigns_dispatch
    from customers.models import Customer
    from customers.services import merchant_create, merchant_metrics_refresh
    from segments.models import SegmentKind
    from segments.services import segment_create, segment_members_add

    merchant = merchant_create(slug="reliable", name="Reliable Shop", time_zone="Europe/Berlin")
    joined = timezone.now()
    customers = [
        Customer(
            merchant=merchant,
            external_id=f"R{n:06d}",
            first_name=f"Customer{n}",
            email=f"r{n:06d}@bench.example",
            email_opt_in=n % 20 != 0,
            joined_at=joined,
        )
        for n in range(args.customers)
    ]
    with transaction.atomic():
        Customer.objects.bulk_create(customers, batch_size=5000)
        merchant_metrics_refresh(merchant_id=merchant.pk)
    segment = segment_create(merchant=merchant, name="Everyone", kind=SegmentKind.MANUAL)
    ids = list(Customer.objects.filter(merchant=merchant).values_list("pk", flat=True))
    segment_members_add(segment=segment, customers=ids)
    eligible = {
        e.lower()
        for e in Customer.objects.filter(merchant=merchant, email_opt_in=True).values_list(
            "email", flat=True
        )
    }
    campaign = campaign_save(
        merchant=merchant,
        include=[segment],
        name="Reliability",
        channel="email",
        subject="Hello {{ first_name }}",
        body="A message for {{ first_name }}.",
        holdout_percent=0,
    )

    worker = start_worker(env)
    time.sleep(4)  # the worker connects to Redis and the database
    started = time.monotonic()
    audience = campaign_start(campaign_id=campaign.pk)
    print(f"audience {audience:,}, eligible {len(eligible):,}; SMTP on port {port}")

    sent = Delivery.objects.filter(campaign=campaign, status="sent")
    while sent.count() < args.kill_after:
        if time.monotonic() - started > args.timeout:
            print("timed out before the kill")
            return 1
        time.sleep(0.05)
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    killed_at = time.monotonic() - started
    at_kill = Counter(Delivery.objects.filter(campaign=campaign).values_list("status", flat=True))
    print(f"killed the worker after {killed_at:.1f} s: {dict(at_kill)}")

    worker = start_worker(env)
    try:
        while Campaign.objects.get(pk=campaign.pk).status != CampaignStatus.SENT:
            if time.monotonic() - started > args.timeout:
                print("timed out before the campaign finished")
                return 1
            campaigns_dispatch()  # what beat runs every minute
            time.sleep(3)
        finished_at = time.monotonic() - started
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait()
        smtp.stop()

    by_recipient = Counter(rcpt for rcpt, _ in inbox.received)
    by_message_id = Counter(mid for _, mid in inbox.received)
    ids_per_recipient = Counter(rcpt for rcpt, _ in set(inbox.received))
    final = Counter(Delivery.objects.filter(campaign=campaign).values_list("status", flat=True))
    results = campaign_results(campaign=Campaign.objects.get(pk=campaign.pk))
    checks = {
        "every eligible customer received the message, nobody else": set(by_recipient) == eligible,
        # A worker killed in the instant between handing a message over and recording it
        # sends it again: the same message, with the same Message-ID (counted as repeats).
        "one message (one Message-ID) per customer": all(
            n == 1 for n in ids_per_recipient.values()
        ),
        "nothing left queued or sending": final["queued"] == 0 and final["sending"] == 0,
        "sent + skipped + failed = audience": final["sent"] + final["skipped"] + final["failed"]
        == audience,
        "sent = distinct messages the server accepted": final["sent"] == len(by_message_id),
        "skipped = customers without consent": final["skipped"] == audience - len(eligible),
        "the results page counts the same": (results.sent, results.skipped, results.failed)
        == (final["sent"], final["skipped"], final["failed"]),
    }
    summary = {
        "customers": args.customers,
        "audience": audience,
        "eligible": len(eligible),
        "killed_after_s": round(killed_at, 1),
        "at_kill": dict(at_kill),
        "finished_after_s": round(finished_at, 1),
        "final": dict(final),
        "messages_received": len(inbox.received),
        "repeats_by_recipient": sum(n - 1 for n in by_recipient.values()),
        "repeats_with_the_same_message_id": sum(n - 1 for n in by_message_id.values()),
        # Recorded sent, never received: the worker died between the record and the final
        # "." of that message (see docs/campaigns.md).
        "lost": len(eligible - set(by_recipient)),
        "checks": checks,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "campaign_reliability.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
