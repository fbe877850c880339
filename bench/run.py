"""`make bench`: every benchmark of the project, on PostgreSQL.

    make bench                                    # default sizes
    BENCH_DATABASE_URL=postgres://... make bench  # another server
    .venv/bin/python bench/run.py --only import --import-customers 10000
    .venv/bin/python bench/run.py --only segments   # segment engine (after generate)
    .venv/bin/python bench/run.py --only scores     # customer scores, issue 12 (after generate)
    .venv/bin/python bench/run.py --only list --only downloads  # issue 4 (after generate)
    .venv/bin/python bench/run.py --only hardening --generate-sizes 100000  # hostile input
    .venv/bin/python bench/run.py --only reports    # reports and dashboard (after generate)
    .venv/bin/python bench/run.py --only campaigns  # campaigns, needs Redis (after generate)
    .venv/bin/python bench/run.py --only api        # JSON API and webhooks (after generate)

Creates the benchmark database when missing and migrates it, then runs each benchmark
script in turn; they print their figures and keep raw output in bench/out/ (git-ignored).
docs/benchmarks.md records the figures with the machine and the date.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/segment_portal_bench"


def ensure_database(url: str) -> None:
    parsed = urlparse(url)
    if parsed.scheme not in {"postgres", "postgresql"}:
        sys.exit(f"Benchmarks run on PostgreSQL; {url!r} is not a PostgreSQL URL.")
    import psycopg

    name = parsed.path.lstrip("/")
    admin_url = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
    env = {**os.environ, "DATABASE_URL": url}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True
    )


def import_database_url(url: str) -> str:
    """The benchmark server's database for the import benchmark (`sp_import_bench`)."""
    return urlparse(url)._replace(path="/sp_import_bench").geturl()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    parser.add_argument(
        "--only",
        choices=[
            "generate",
            "import",
            "segments",
            "scores",
            "list",
            "downloads",
            "hardening",
            "reports",
            "campaigns",
            "api",
        ],
        action="append",
    )
    parser.add_argument("--generate-sizes", default="10000,100000,1000000")
    parser.add_argument("--import-customers", type=int, default=100_000)
    args = parser.parse_args()

    ensure_database(args.database_url)
    env = {**os.environ, "DATABASE_URL": args.database_url, "BENCH_DATABASE_URL": args.database_url}
    wanted = set(
        args.only
        or [
            "generate",
            "segments",
            "scores",
            "list",
            "downloads",
            "hardening",
            "reports",
            "campaigns",
            "api",
            "import",
        ]
    )
    if "generate" in wanted:
        subprocess.run(
            [sys.executable, "bench/generate_bench.py", "--sizes", args.generate_sizes],
            cwd=ROOT,
            env=env,
            check=True,
        )
    if "segments" in wanted:
        # Reads the merchants `generate` made (it skips those that exist).
        subprocess.run(
            [sys.executable, "bench/segments_bench.py", "--sizes", args.generate_sizes],
            cwd=ROOT,
            env=env,
            check=True,
        )
    if "scores" in wanted:
        # Reads the merchants `generate` made; resets and recomputes their scores (and gives
        # them spend tier rules when they have none).
        subprocess.run(
            [sys.executable, "bench/scores_bench.py", "--sizes", args.generate_sizes],
            cwd=ROOT,
            env=env,
            check=True,
        )
    # Both read the 1M merchant (downloads also the 100k one) that `generate` made.
    for name in ("list", "downloads"):
        if name in wanted:
            subprocess.run(
                [sys.executable, f"bench/{name}_bench.py"], cwd=ROOT, env=env, check=True
            )
    if "hardening" in wanted:
        # Reads the 100k merchant `generate` made.
        subprocess.run(
            [sys.executable, "bench/hardening_bench.py", "--merchant", "bench-100k"],
            cwd=ROOT,
            env=env,
            check=True,
        )
    if "reports" in wanted:
        # Reads the 1M merchant; adds its own manual segments once (bench-reports-*).
        subprocess.run([sys.executable, "bench/reports_bench.py"], cwd=ROOT, env=env, check=True)
    if "campaigns" in wanted:
        # Reads the 1M merchant; adds its own manual segments once (bench-campaigns-*) and
        # needs Redis (a real Celery worker sends).
        subprocess.run([sys.executable, "bench/campaigns_bench.py"], cwd=ROOT, env=env, check=True)
    if "api" in wanted:
        # Reads the 1M merchant; adds its own segments once (bench-api-*) and serves the
        # portal with gunicorn on a free loopback port.
        subprocess.run([sys.executable, "bench/api_bench.py"], cwd=ROOT, env=env, check=True)
    if "import" in wanted:
        subprocess.run(
            [
                sys.executable,
                "bench/import_bench.py",
                "--customers",
                str(args.import_customers),
                # Its own database: the import benchmark drops and recreates it, and must
                # never take the generated merchants with it.
                "--database-url",
                import_database_url(args.database_url),
            ],
            cwd=ROOT,
            env=env,
            check=True,
        )


if __name__ == "__main__":
    main()
