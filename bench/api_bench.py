"""JSON API and webhooks benchmark (issue 16) on PostgreSQL, on the generator's 1M-customer
merchant, through a real server: gunicorn on loopback (by default sync workers, one per core,
as docs/deployment.md advises for the API; `--worker-class gthread --workers 4 --threads 4`
was the setting before), production settings.

    DJANGO_DEBUG=1 BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/segment_portal_bench \\
        .venv/bin/python bench/api_bench.py [--merchant bench-1m] [--batches 40] [--clients 2]
        [--seconds 20] [--only transactions --only members --only customer --only webhooks]
    .venv/bin/python bench/run.py --only api     # the same, through `make bench`

Reads the merchant `generate_bench.py` made. Setup (kept between runs): the twenty active
dynamic segments of the segments benchmark's mix (`Bench API ...`, refreshed once), a manual
segment of 100,000 random customers (`bench-api-100k`), a write token. No broker: the
membership update that follows each write runs in the request, after its commit, so a
batch's answer comes only once its customers' memberships are current.

1. `POST /api/v1/transactions`: `--batches` batches of 500 new purchases (one line item
   each) of random customers, posted by two clients at once (`--clients`);
   purchases per second over the whole run, and each batch's time. Then the memberships are
   checked: updating a sample of the buyers again must change nothing.
2. `GET /api/v1/segments/bench-api-100k/members`: the 100,000 members by cursor, 1,000 per
   page, following `next` until it is null; members per second (median of three reads).
3. `GET /api/v1/customers/{external_id}`: 16 clients, each asking for random customers (of
   10,000) back to back for `--seconds` (the server saturated: latency is then mostly the
   queue), from wrk (`bench/wrk_customer.lua`; Debian's package `wrk`) when it is installed,
   else from this script's asyncio loader; then paced at `--rates` requests a second per
   client (the asyncio loader); p50/p95/p99 latency and requests per second. A connection is
   kept while the server keeps it (gunicorn's sync workers close it after each answer, and
   the next request opens a new one, counted in its latency). The load test stops by
   itself.
4. Webhooks: an endpoint (a local receiver) subscribed to segment entries and exits, and a
   dynamic segment whose refresh moves about 100,000 members: the refresh's time with the
   messages made in it, the number of messages and requests (batches of
   `WEBHOOK_BATCH_SIZE`), and the time until the receiver has every event.

Raw figures go to bench/out/api-<timestamp>.json (git-ignored).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import http.client
import json
import os
import platform
import random
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/segment_portal_bench"
sys.path.insert(0, str(ROOT))
TARGETS = {"purchases_per_s": 2000.0, "members_per_s": 50_000.0, "p95_ms": 20.0}
PREFIX = "Bench API "


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


class Server:
    """gunicorn serving the portal on a free loopback port."""

    def __init__(self, env: dict[str, str], worker_class: str, workers: int, threads: int) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [
                str(ROOT / ".venv" / "bin" / "gunicorn"),
                "config.wsgi:application",
                "--worker-class",
                worker_class,
                "--workers",
                str(workers),
                "--threads",
                str(threads),
                "--bind",
                f"127.0.0.1:{self.port}",
                "--keep-alive",
                "30",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                time.sleep(0.2)
        else:
            self.stop()
            raise SystemExit("gunicorn did not start")

    def stop(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        self.process.wait(30)


class Client:
    """One keep-alive connection speaking JSON with the bearer token."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        self.connection.request(method, path, body=data, headers=self.headers)
        response = self.connection.getresponse()
        raw = response.read()
        return response.status, (json.loads(raw) if raw else None)


# --- setup ------------------------------------------------------------------------------------


def setup(merchant: Any) -> dict[str, Any]:
    from django.db import connection
    from reports_bench import manual_segment  # this folder is on the path when run
    from segments_bench import variants

    from customers.api_tokens import api_token_create
    from customers.models import ApiToken, ApiTokenScope
    from segments.models import Segment, SegmentKind
    from segments.services import segment_refresh

    segments = list(Segment.objects.filter(merchant=merchant, name__startswith=PREFIX))
    if len(segments) != 20:
        Segment.objects.filter(merchant=merchant, name__startswith=PREFIX).delete()
        segments = [
            Segment.objects.create(
                merchant=merchant,
                name=PREFIX + name,
                slug=f"bench-api-{i}",
                kind=SegmentKind.DYNAMIC,
                rules=rules,
            )
            for i, (name, rules) in enumerate(variants(merchant, 20))
        ]
    for segment in segments:
        if segment.last_refreshed_at is None:
            started = time.perf_counter()
            result = segment_refresh(segment_id=segment.pk)
            print(
                f"  setup: refreshed {segment.name}: {result.member_count} members "
                f"in {time.perf_counter() - started:.1f} s",
                flush=True,
            )
    members = manual_segment(merchant, "bench-api-100k", 100_000, 0.41)
    # Fresh statistics after the refreshes wrote millions of rows (autovacuum may be off, as
    # on the CI machines; without them the membership lookups scan the whole table).
    with connection.cursor() as cursor:
        for table in (
            "segments_segmentmembership",
            "segments_membershipevent",
            "customers_customermetrics",
            "customers_customersales",
            "customers_customerproductstats",
            "customers_transaction",
            "customers_lineitem",
        ):
            cursor.execute(f"VACUUM ANALYZE {table}")
        # And every other table: the segments' own rows were last analyzed before these
        # twenty existed, and the membership read then looked each segment up in turn
        # instead of the customer's memberships (0.30 instead of 0.15 ms a customer read).
        cursor.execute("ANALYZE")
    ApiToken.objects.filter(merchant=merchant, name="bench-api").delete()
    _, token = api_token_create(merchant=merchant, name="bench-api", scope=ApiTokenScope.WRITE)
    return {"segments": len(segments), "members_slug": members.slug, "token": token}


# --- 1. transactions --------------------------------------------------------------------------


def bench_transactions(
    port: int, token: str, merchant: Any, batches: int, clients: int = 2
) -> dict[str, Any]:
    from customers.models import Customer, Product
    from segments.services import segment_memberships_update_for_customers

    rng = random.Random(16)
    ids = list(
        Customer.objects.filter(merchant=merchant)
        .order_by("?")
        .values_list("pk", "external_id")[: batches * 500]
    )
    skus = list(Product.objects.filter(merchant=merchant).values_list("sku", flat=True)[:200])
    run = secrets.token_hex(3)
    now = dt.datetime.now(dt.UTC)
    bodies = []
    for b in range(batches):
        rows = []
        for n in range(500):
            _, external_id = ids[(b * 500 + n) % len(ids)]
            amount = Decimal(rng.randrange(500, 20000)) / 100
            rows.append(
                {
                    "external_id": f"bench-api-{run}-{b}-{n}",
                    "customer": external_id,
                    "occurred_at": (now - dt.timedelta(seconds=rng.randrange(3600))).isoformat(),
                    "total": str(amount),
                    "items": [{"sku": rng.choice(skus), "quantity": 1, "amount": str(amount)}],
                }
            )
        bodies.append({"transactions": rows})
    # One warm-up batch (not counted) per worker.
    Client(port, token).request("POST", "/api/v1/transactions", {"transactions": []})
    times: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    queue = list(range(batches))

    def worker() -> None:
        client = Client(port, token)
        while True:
            with lock:
                if not queue:
                    return
                b = queue.pop(0)
            started = time.perf_counter()
            status, body = client.request("POST", "/api/v1/transactions", bodies[b])
            took = time.perf_counter() - started
            with lock:
                times.append(took)
                if status != 201 or body.get("created") != 500:
                    errors.append(f"batch {b}: {status} {str(body)[:200]}")

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    purchases = batches * 500
    # Fresh memberships: updating a sample of the buyers again changes nothing.
    sample = [pk for pk, _ in rng.sample(ids, 2000)]
    changes = segment_memberships_update_for_customers(merchant_id=merchant.pk, customer_ids=sample)
    moved = sum(len(c.entered) + len(c.exited) for c in changes)
    return {
        "batches": batches,
        "clients": clients,
        "purchases": purchases,
        "seconds": round(wall, 2),
        "purchases_per_s": round(purchases / wall),
        "batch_ms_p50": round(statistics.median(times) * 1000),
        "batch_ms_p95": round(percentile(times, 95) * 1000),
        "errors": errors[:5],
        "stale_members_in_sample_of_2000": moved,
    }


# --- 2. members by cursor -------------------------------------------------------------------


def bench_members(port: int, token: str, slug: str, runs: int = 3) -> dict[str, Any]:
    client = Client(port, token)
    timings = []
    count = 0
    for _ in range(runs + 1):  # the first is a warm-up
        path: str | None = f"/api/v1/segments/{slug}/members?limit=1000"
        count = 0
        started = time.perf_counter()
        while path:
            status, body = client.request("GET", path)
            assert status == 200, body
            count += len(body["items"])
            following = body["next"]
            path = None
            if following:
                parts = urlsplit(following)
                path = parts.path + "?" + parts.query
        timings.append(time.perf_counter() - started)
    best = statistics.median(timings[1:])
    return {
        "members": count,
        "seconds_median": round(best, 2),
        "members_per_s": round(count / best),
        "runs_s": [round(t, 2) for t in timings[1:]],
    }


# --- 3. one customer, 16 clients --------------------------------------------------------------


async def _load(
    port: int, token: str, ids: list[str], clients: int, seconds: float, rate: float = 0
) -> Any:
    """`clients` keep-alive connections asking for random customers until `seconds` have
    passed: back to back (`rate` 0), or each at `rate` requests a second (paced from its
    start: a late request goes at once, none is skipped)."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + seconds

    async def one(seed: int) -> None:
        rng = random.Random(seed)
        connection: list[Any] = []  # (reader, writer) while the server keeps it open
        began, sent = time.monotonic() + rng.random() / max(rate, 1), 0
        while time.monotonic() < deadline:
            if rate:
                wait = began + sent / rate - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                sent += 1
            started = time.perf_counter()  # a new connection's set-up is counted too
            status = await _get(port, token, f"/api/v1/customers/{rng.choice(ids)}", connection)
            latencies.append(time.perf_counter() - started)
            statuses[status] = statuses.get(status, 0) + 1
        if connection:
            connection[1].close()

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(clients)))
    return latencies, statuses, time.perf_counter() - started


async def _get(port: int, token: str, path: str, connection: list[Any]) -> int:
    """GET `path` on the connection in `connection` (opened first when empty; emptied when
    the server closes it, as gunicorn's sync workers do after each answer): the status."""
    if not connection:
        connection.extend(await asyncio.open_connection("127.0.0.1", port))
    reader, writer = connection
    writer.write(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {token}\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    await reader.readexactly(int(fields["content-length"]))
    if fields.get("connection", "").lower() == "close":
        writer.close()
        connection.clear()
    return int(lines[0].split()[1])


async def _warm(port: int, token: str, ids: list[str]) -> None:
    queue = list(ids)

    async def one() -> None:
        connection: list[Any] = []
        while queue:
            await _get(port, token, f"/api/v1/customers/{queue.pop()}", connection)
        if connection:
            connection[1].close()

    await asyncio.gather(*(one() for _ in range(8)))


WRK_SCRIPT = ROOT / "bench" / "wrk_customer.lua"


def _wrk(port: int, token: str, ids: list[str], seconds: float) -> dict[str, Any]:
    """16 connections asking back to back for `seconds`, from wrk (two threads, written in
    C: the asyncio loader's Python took a share of the two cores the server runs on)."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as file:
        file.write("\n".join(ids))
        file.flush()
        env = {**os.environ, "WRK_TOKEN": token, "WRK_IDS": file.name}
        command = ["wrk", "-t2", "-c16", f"-d{seconds:g}s", "-s", str(WRK_SCRIPT)]
        command.append(f"http://127.0.0.1:{port}")
        subprocess.run([*command[:3], "-d3s", *command[4:]], env=env, capture_output=True)
        output = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    line = next(x for x in output.stdout.splitlines() if x.startswith("JSON "))
    figures = json.loads(line.removeprefix("JSON "))
    return {
        "clients": 16,
        "loader": "wrk",
        "rate_per_client": "back to back",
        "seconds": figures["seconds"],
        "requests": figures["requests"],
        "requests_per_s": round(figures["requests"] / figures["seconds"]),
        # wrk counts the answers that are not 2xx or 3xx, not each status
        "statuses": {
            "2xx or 3xx": figures["requests"] - figures["errors_status"],
            "other": figures["errors_status"],
        },
        "p50_ms": round(figures["p50_ms"], 1),
        "p95_ms": round(figures["p95_ms"], 1),
        "p99_ms": round(figures["p99_ms"], 1),
    }


def bench_customer(
    port: int, token: str, merchant: Any, seconds: float, rate: float = 0, warm: bool = False
) -> dict[str, Any]:
    from django.db.models import Max, Min

    from customers.models import Customer

    customers = Customer.objects.filter(merchant=merchant)
    if warm:
        # The same 10,000 on every warm run (chosen by a seeded draw of ids), so the cache
        # one run warms serves the next.
        bounds = customers.aggregate(low=Min("pk"), high=Max("pk"))
        drawn = random.Random(7).sample(range(bounds["low"], bounds["high"] + 1), 12_000)
        ids = list(customers.filter(pk__in=drawn).values_list("external_id", flat=True)[:10000])
    else:
        ids = list(customers.order_by("?").values_list("external_id", flat=True)[:10000])
    if warm:
        # Each of the 10,000 customers read once first (their rows in PostgreSQL's and the
        # system's caches: a member app's active customers), then the measured run.
        asyncio.run(_warm(port, token, ids))
    which = "warm (each read once before)" if warm else "random of 10,000, cold"
    if not rate and shutil.which("wrk"):
        return {**_wrk(port, token, ids, seconds), "customers": which}
    if not warm:
        asyncio.run(_load(port, token, ids, 16, 3))  # warm-up of the server only
    latencies, statuses, wall = asyncio.run(_load(port, token, ids, 16, seconds, rate))
    ms = [x * 1000 for x in latencies]
    return {
        "clients": 16,
        "loader": "asyncio (this script)",
        "customers": which,
        "rate_per_client": rate or "back to back",
        "seconds": round(wall, 1),
        "requests": len(ms),
        "requests_per_s": round(len(ms) / wall),
        "statuses": statuses,
        "p50_ms": round(percentile(ms, 50), 1),
        "p95_ms": round(percentile(ms, 95), 1),
        "p99_ms": round(percentile(ms, 99), 1),
    }


# --- 4. webhooks on a large refresh -----------------------------------------------------------


class Receiver(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), ReceiverHandler)
        self.events = 0
        self.requests = 0
        self.last_at = 0.0
        self.lock = threading.Lock()


class ReceiverHandler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.requests += 1
            self.server.events += len(body["data"].get("events", []))
            self.server.last_at = time.perf_counter()
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def bench_webhooks(merchant: Any) -> dict[str, Any]:
    from django.conf import settings
    from segments_bench import spend_for_members

    from campaigns.models import WebhookEndpoint, WebhookMessage
    from campaigns.services.webhooks import endpoint_create
    from segments.models import Segment, SegmentKind
    from segments.services import segment_refresh

    receiver = Receiver()
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    WebhookEndpoint.objects.filter(merchant=merchant).delete()
    Segment.objects.filter(merchant=merchant, slug="bench-api-webhooks").delete()
    threshold = spend_for_members(merchant, 100_000)
    segment = Segment.objects.create(
        merchant=merchant,
        name="Bench webhooks 100k",
        slug="bench-api-webhooks",
        kind=SegmentKind.DYNAMIC,
        rules={
            "match": "all",
            "conditions": [{"field": "total_spend", "op": "gte", "value": str(threshold)}],
        },
    )
    # Without an endpoint: the refresh alone.
    started = time.perf_counter()
    plain = segment_refresh(segment_id=segment.pk)
    plain_s = time.perf_counter() - started
    Segment.objects.filter(pk=segment.pk).update(
        rules={
            "match": "all",
            "conditions": [{"field": "total_spend", "op": "gte", "value": "999999999"}],
        }
    )
    emptied = segment_refresh(segment_id=segment.pk)
    Segment.objects.filter(pk=segment.pk).update(
        rules={
            "match": "all",
            "conditions": [{"field": "total_spend", "op": "gte", "value": str(threshold)}],
        }
    )
    endpoint = endpoint_create(
        merchant=merchant,
        url=f"http://127.0.0.1:{receiver.server_address[1]}/hook",
        events=["segment.entered", "segment.exited"],
    )
    before = WebhookMessage.objects.filter(merchant=merchant).count()
    started = time.perf_counter()
    # No broker: the sender runs on commit, in this process, before segment_refresh returns.
    result = segment_refresh(segment_id=segment.pk)
    total_s = time.perf_counter() - started
    messages = WebhookMessage.objects.filter(merchant=merchant).count() - before
    receiver.shutdown()
    endpoint.delete()
    return {
        "members_moved": result.entered + result.exited,
        "refresh_without_endpoint_s": round(plain_s, 2),
        "refresh_entered_without": plain.entered,
        "emptied_exits": emptied.exited,
        "refresh_and_delivery_s": round(total_s, 2),
        "batch_size": settings.WEBHOOK_BATCH_SIZE,
        "messages": messages,
        "requests_received": receiver.requests,
        "events_received": receiver.events,
    }


# --- main -------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--merchant", default="bench-1m")
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument(
        "--clients", type=int, default=2, help="clients posting batches at once (default 2)"
    )
    parser.add_argument("--seconds", type=float, default=20)
    # Paced runs of the customer read after the back-to-back one: requests a second per
    # client (16 clients), e.g. 25 = 400 requests a second in all.
    parser.add_argument("--rates", type=float, nargs="*", default=[5.0, 15.0, 25.0])
    # gunicorn: worker processes and threads each (16 connections in all by default).
    # gunicorn as docs/deployment.md advises for the API: sync workers, one per core.
    parser.add_argument("--worker-class", default="sync", choices=["sync", "gthread"])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--only", action="append", choices=["transactions", "members", "customer", "webhooks"]
    )
    args = parser.parse_args()
    wanted = set(args.only or ["transactions", "members", "customer", "webhooks"])
    env = {
        **os.environ,
        # Production settings (DEBUG off), a throwaway key, plain HTTP on loopback.
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DJANGO_SECURE_SSL_REDIRECT": "0",
        "DATABASE_URL": os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "CELERY_BROKER_URL": "",
        "API_RATE_LIMIT": "0",
        # The webhook receiver of part 4 is on loopback.
        "WEBHOOK_ALLOW_PRIVATE_HOSTS": "1",
    }
    os.environ.update(env)
    import django

    django.setup()
    from customers.models import Merchant

    merchant = Merchant.objects.get(slug=args.merchant)
    print(f"API benchmark on {merchant.slug}", flush=True)
    prepared = setup(merchant)
    report: dict[str, Any] = {
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "merchant": merchant.slug,
        "segments": prepared["segments"],
    }
    server = Server(env, args.worker_class, workers=args.workers, threads=args.threads)
    try:
        if "transactions" in wanted:
            report["transactions"] = bench_transactions(
                server.port, prepared["token"], merchant, args.batches, args.clients
            )
            print("  transactions:", report["transactions"], flush=True)
        if "members" in wanted:
            report["members"] = bench_members(
                server.port, prepared["token"], prepared["members_slug"]
            )
            print("  members:", report["members"], flush=True)
        if "customer" in wanted:
            report["customer"] = bench_customer(
                server.port, prepared["token"], merchant, args.seconds
            )
            print("  customer:", report["customer"], flush=True)
            for rate in args.rates:
                report[f"customer_at_{rate:g}_per_client"] = bench_customer(
                    server.port, prepared["token"], merchant, args.seconds, rate
                )
                print(f"  customer, {rate:g}/s each:", report[f"customer_at_{rate:g}_per_client"])
            for rate in (0, *args.rates):
                name = f"customer_warm_at_{rate:g}_per_client"
                report[name] = bench_customer(
                    server.port, prepared["token"], merchant, args.seconds, rate, warm=True
                )
                print(f"  customer (warm), {rate:g}/s each:", report[name], flush=True)
    finally:
        server.stop()
    if "webhooks" in wanted:
        report["webhooks"] = bench_webhooks(merchant)
        print("  webhooks:", report["webhooks"], flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"api-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2, default=str))
    print(f"raw figures: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
