"""Campaigns benchmark (issue 15) on PostgreSQL, on the generator's 1M-customer merchant:
the audience preview, the snapshot and enqueue of 100,000 deliveries, and delivery through
the file backend by two Celery worker processes.

    DJANGO_DEBUG=1 BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/segment_portal_bench \\
        .venv/bin/python bench/campaigns_bench.py [--merchant bench-1m] [--runs 5]
        [--broker redis://127.0.0.1:6379/13]
    .venv/bin/python bench/run.py --only campaigns   # the same, through `make bench`

Reads the merchant `generate_bench.py` made. Setup (kept between runs): a manual segment of
100,000 random customers (`bench-campaigns-100k`) and one of 20,000 (`bench-campaigns-
exclude`) to exclude; the contact rules cap email at 2 messages in 7 days, and two earlier
campaigns (`Bench prior A/B`, deliveries written with SQL two days ago, to 60 % and 50 %
of the segment) make the cap bite. Each run removes the campaigns of the previous run.

1. Preview: `campaigns.audience.preview` (one grouped count over the audience with each
   member's reason: consent, address, the cap's correlated count, the hashed holdout) of an
   email campaign to the 100k segment minus the 20k one, 10 % holdout: warm-up, then
   `--runs` times; median and slowest.
2. Snapshot and enqueue: `campaign_start` of such a campaign (one INSERT ... SELECT of every
   member's delivery, the campaign marked sending, the sender tasks put on Redis), `--runs`
   times, each on a new campaign; the tasks are taken off the queue again before delivery.
3. Delivery: a Celery worker with two processes (prefork, `-c 2`) and the file backend
   (one JSON file per message in a temporary directory) sends a started campaign; the rate
   is the messages sent over the time from the first to the last `sent_at`; the resident
   memory of both worker processes is sampled every 0.5 s (start, peak, end).

Raw figures go to bench/out/campaigns-<timestamp>.json (git-ignored).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/segment_portal_bench"
DEFAULT_BROKER = "redis://127.0.0.1:6379/13"
sys.path.insert(0, str(ROOT))
TARGETS = {"preview_s": 2.0, "snapshot_s": 10.0, "rate_per_s": 2000.0}


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    try:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    except OSError:
        return []
    return [int(p) for p in out.stdout.split()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--merchant", default="bench-1m")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--broker", default=DEFAULT_BROKER)
    args = parser.parse_args()
    outbox = Path(tempfile.mkdtemp(prefix="bench-outbox-"))
    env = {
        **os.environ,
        # Production settings (DEBUG off: no query log per statement), with a throwaway key.
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DATABASE_URL": os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "CELERY_BROKER_URL": args.broker,
        "CAMPAIGN_EMAIL_BACKEND": "file",
        "CAMPAIGN_OUTBOX_DIR": str(outbox),
    }
    os.environ.update(env)
    import django

    django.setup()
    import redis
    from django.db import connection, transaction
    from django.db.models import Max, Min
    from django.utils import timezone
    from reports_bench import manual_segment  # this folder is on the path when run

    from campaigns import audience
    from campaigns.models import Campaign, CampaignStatus, ContactRules, Delivery
    from campaigns.services.campaigns import campaign_save
    from campaigns.services.sending import campaign_start
    from customers.models import Merchant

    broker = redis.Redis.from_url(args.broker)
    broker.flushdb()
    merchant = Merchant.objects.get(slug=args.merchant)
    members = manual_segment(merchant, "bench-campaigns-100k", 100_000, 0.31)
    excluded = manual_segment(merchant, "bench-campaigns-exclude", 20_000, 0.32)
    ContactRules.objects.update_or_create(
        merchant=merchant, defaults={"cap_messages": 2, "cap_days": 7}
    )
    Campaign.objects.filter(merchant=merchant, name__startswith="Bench ").delete()
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {Delivery._meta.db_table}")
    two_days_ago = timezone.now() - dt.timedelta(days=2)
    for name, share, seed in (("Bench prior A", 0.6, 0.41), ("Bench prior B", 0.5, 0.42)):
        prior = Campaign.objects.create(
            merchant=merchant,
            name=name,
            subject="Earlier",
            body="Earlier",
            status=CampaignStatus.SENT,
            started_at=two_days_ago,
            finished_at=two_days_ago,
        )
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT setseed(%s)", [seed])
            cursor.execute(
                f"""
                INSERT INTO {Delivery._meta.db_table} (campaign_id, customer_id, channel,
                    status, skip_reason, error, attempts, sent_at, created_at)
                SELECT %s, customer_id, 'email', 'sent', '', '', 1, %s, %s
                FROM segments_segmentmembership WHERE segment_id = %s AND random() < %s
                """,
                [prior.pk, two_days_ago, two_days_ago, members.pk, share],
            )
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {Delivery._meta.db_table}")
        cursor.execute("VACUUM ANALYZE segments_segmentmembership")

    def new_campaign(n: int) -> Campaign:
        return campaign_save(
            merchant=merchant,
            include=[members],
            exclude=[excluded],
            name=f"Bench campaign {n}",
            channel="email",
            subject="Hello {{ first_name }}",
            body='Dear {{ first_name|default:"customer" }}, you have {{ points_balance }} points.',
            holdout_percent=10,
        )

    figures: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.node()} {os.cpu_count()} cores, PostgreSQL "
        f"{connection.cursor().connection.info.server_version}",
    }

    # 1. preview
    probe = new_campaign(0)
    seen = audience.preview(probe)
    times = []
    for _ in range(args.runs):
        started = time.perf_counter()
        seen = audience.preview(probe)
        times.append(time.perf_counter() - started)
    figures["preview"] = {
        "members": seen.members,
        "eligible": seen.eligible,
        "skipped": seen.skipped,
        "median_s": round(statistics.median(times), 3),
        "max_s": round(max(times), 3),
    }
    print("preview", figures["preview"])

    # 2. snapshot and enqueue (no worker runs: the tasks stay on Redis, then are dropped)
    snaps = []
    for n in range(1, args.runs + 1):
        campaign = new_campaign(n)
        started = time.perf_counter()
        size = campaign_start(campaign_id=campaign.pk)  # commits, then enqueues
        snaps.append(time.perf_counter() - started)
        queued = broker.llen("celery")
        broker.flushdb()
        # Its queued deliveries would count towards the next campaigns' frequency cap.
        Campaign.objects.filter(pk=campaign.pk).delete()
    figures["snapshot"] = {
        "deliveries": size,
        "tasks_enqueued": queued,
        "median_s": round(statistics.median(snaps), 3),
        "max_s": round(max(snaps), 3),
    }
    print("snapshot", figures["snapshot"])

    # 3. delivery by two worker processes
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {Delivery._meta.db_table}")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "-c", "2", "-l", "warning"],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    time.sleep(5)
    pids = children(worker.pid)
    campaign = new_campaign(args.runs + 1)
    memory: list[list[int]] = []
    started = time.perf_counter()
    size = campaign_start(campaign_id=campaign.pk)
    while Campaign.objects.get(pk=campaign.pk).status != CampaignStatus.SENT:
        memory.append([rss_kib(p) for p in pids])
        time.sleep(0.5)
        if time.perf_counter() - started > 900:
            print("delivery timed out")
            break
    wall = time.perf_counter() - started
    memory.append([rss_kib(p) for p in pids])
    os.killpg(worker.pid, signal.SIGTERM)
    worker.wait()
    sent = Delivery.objects.filter(campaign=campaign, status="sent")
    span_of = sent.aggregate(first=Min("sent_at"), last=Max("sent_at"))
    first, last = span_of["first"], span_of["last"]
    count = sent.count()
    files = sum(1 for _ in outbox.rglob("*.json"))
    span = (last - first).total_seconds()
    figures["delivery"] = {
        "sent": count,
        "files": files,
        "span_s": round(span, 2),
        "rate_per_s": round(count / span) if span else None,
        "wall_s_start_to_finished": round(wall, 2),
        "rss_kib_per_process": {
            "start": memory[0],
            "peak": [max(m[i] for m in memory) for i in range(len(pids))],
            "end": memory[-1],
        },
    }
    print("delivery", figures["delivery"])
    shutil.rmtree(outbox, ignore_errors=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"campaigns-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(
        json.dumps(figures, indent=2)
    )
    ok = (
        figures["preview"]["median_s"] < TARGETS["preview_s"]
        and figures["snapshot"]["median_s"] < TARGETS["snapshot_s"]
        and (figures["delivery"]["rate_per_s"] or 0) >= TARGETS["rate_per_s"]
    )
    print("goals met" if ok else "a goal was missed", TARGETS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
