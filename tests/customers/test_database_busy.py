"""Two writers on SQLite (an import while a refresh runs): the second waits for the first
instead of failing, and when a lock still wins the user gets "busy, try again" with nothing
written, never a 500 (the Hardening issue, point 4)."""

from __future__ import annotations

import io
import sqlite3
import threading
import time
from pathlib import Path
from unittest import mock

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import OperationalError, connection
from django.db.backends.sqlite3.base import DatabaseWrapper
from django.urls import reverse

from config.settings import SQLITE_OPTIONS
from customers import imports
from customers.imports import merge
from customers.models import Customer
from customers.portal.middleware import is_database_busy

pytestmark = pytest.mark.django_db

CUSTOMERS_CSV = b"external_id,joined_at\nC1,2026-01-05T10:00:00\n"


def sqlite_wrapper(path: Path, **options) -> DatabaseWrapper:
    """A connection to the SQLite file `path` configured as the project configures SQLite."""
    settings_dict = {
        **connection.settings_dict,
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(path),
        "OPTIONS": {**SQLITE_OPTIONS, **options},
    }
    wrapper = DatabaseWrapper(settings_dict, alias=f"lock-{threading.get_ident()}")
    wrapper.ensure_connection()
    return wrapper


def begin(wrapper: DatabaseWrapper) -> None:
    # What atomic() runs on SQLite: BEGIN with the configured transaction mode.
    wrapper._start_transaction_under_autocommit()  # type: ignore[attr-defined]


def run(wrapper: DatabaseWrapper, sql: str) -> None:
    wrapper.connection.execute(sql)


@pytest.fixture
def database(tmp_path) -> Path:
    path = tmp_path / "writers.sqlite3"
    setup = sqlite3.connect(path)
    # WAL once, before the writers connect: switching a database to WAL takes a lock of its
    # own, which two connections doing it at once would fight over.
    setup.execute("PRAGMA journal_mode=WAL")
    setup.execute("CREATE TABLE t (writer TEXT)")
    setup.commit()
    setup.close()
    return path


def read_then_write(database: Path, *, wait: float = 0.3, **options: str) -> list[str]:
    """The import's pattern against the refresh's, each in a thread with its own connection
    configured as the project configures SQLite (and `options`): the first reads, the second
    writes and commits meanwhile, then the first writes. Returns what went wrong."""
    problems: list[str] = []
    first_read = threading.Event()
    second_done = threading.Event()

    def importer() -> None:
        try:
            first = sqlite_wrapper(database, **options)
            begin(first)
            run(first, "SELECT count(*) FROM t")
            first_read.set()
            # The refresh writes meanwhile (or, holding no lock, waits for us: then this
            # times out after `wait`).
            second_done.wait(timeout=wait)
            run(first, "INSERT INTO t VALUES ('import')")
            run(first, "COMMIT")
        except Exception as exc:
            first_read.set()
            problems.append(f"import: {exc}")

    def refresher() -> None:
        first_read.wait()
        try:
            second = sqlite_wrapper(database, **options)
            begin(second)
            run(second, "INSERT INTO t VALUES ('refresh')")
            run(second, "COMMIT")
        except Exception as exc:
            problems.append(f"refresh: {exc}")
        finally:
            second_done.set()

    threads = [threading.Thread(target=importer), threading.Thread(target=refresher)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return problems


@pytest.mark.skipif(connection.vendor != "sqlite", reason="the default database is SQLite")
def test_the_project_configures_immediate_transactions_and_a_busy_timeout():
    options = connection.settings_dict["OPTIONS"]
    assert options["transaction_mode"] == "IMMEDIATE"
    assert options["timeout"] >= 20


def test_the_second_writer_waits_for_the_first(database):
    # given two connections configured as the project configures SQLite, when one reads,
    # the other writes, and the first writes after it
    problems = read_then_write(database)

    # then both writes land: the second writer waited for the lock
    assert problems == []
    rows = sqlite3.connect(database).execute("SELECT writer FROM t ORDER BY rowid").fetchall()
    assert rows == [("import",), ("refresh",)]


def test_deferred_transactions_fail_at_once_which_is_why_the_project_avoids_them(database):
    # The failure the issue saw: with BEGIN (deferred) the reader's snapshot is stale after
    # the other commit, and SQLite refuses its write without waiting for the timeout.
    started = time.monotonic()
    problems = read_then_write(database, wait=10, transaction_mode="DEFERRED")

    assert problems == ["import: database is locked"]
    assert time.monotonic() - started < 5  # at once, not after the 30 s busy timeout


def test_a_lock_that_still_wins_is_busy_not_a_500(merchant, staff_client):
    locked = OperationalError("database is locked")
    upload = io.BytesIO(CUSTOMERS_CSV)
    upload.name = "customers.csv"
    root = imports.upload_root()
    before = set(root.iterdir()) if root.exists() else set()

    with mock.patch.object(merge, "merge_all", side_effect=locked):
        response = staff_client.post(reverse("customers:import"), {"customers": upload})

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert "Nothing of this request was saved" in response.content.decode()
    assert not Customer.objects.filter(merchant=merchant).exists()
    # the uploaded files went too: they must be sent again
    assert (set(root.iterdir()) if root.exists() else set()) == before


def test_a_busy_import_command_exits_75_with_a_message(merchant, tmp_path):
    path = tmp_path / "customers.csv"
    path.write_bytes(CUSTOMERS_CSV)
    locked = OperationalError("database is locked")

    with (
        mock.patch.object(merge, "merge_all", side_effect=locked),
        pytest.raises(CommandError) as info,
    ):
        call_command("import_data", "--merchant", merchant.slug, "--customers", str(path))

    assert info.value.returncode == 75
    assert "nothing was written. Run the import again." in str(info.value)
    assert not Customer.objects.filter(merchant=merchant).exists()


class _PgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("error", "busy"),
    [
        (OperationalError("database is locked"), True),
        (OperationalError("no such table: x"), False),
        (ValueError("database is locked"), False),
    ],
)
def test_what_counts_as_busy(error, busy):
    assert is_database_busy(error) is busy


@pytest.mark.parametrize(("sqlstate", "busy"), [("40P01", True), ("55P03", True), ("42P01", False)])
def test_postgres_lock_failures_count_as_busy(sqlstate, busy):
    error = OperationalError("lock")
    error.__cause__ = _PgError(sqlstate)
    assert is_database_busy(error) is busy
