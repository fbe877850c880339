"""`manage.py import_data` and `create_merchant`: output and exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from customers.models import Branch, Customer, Merchant

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


def test_import_prints_a_count_per_file(write_csv, merchant, capsys):
    branches = write_csv("branches", "code,name", "B1,Main", "B2,East")
    customers = write_csv("customers", "external_id,joined_at,home_branch", "C1,2024-01-01,B2")

    call_command(
        "import_data",
        "--merchant",
        "acme",
        "--branches",
        str(branches),
        "--customers",
        str(customers),
    )

    out = capsys.readouterr().out
    assert "branches: 2 rows read, 2 created, 0 updated, 0 unchanged" in out
    assert "customers: 1 rows read, 1 created, 0 updated, 0 unchanged" in out
    assert "Imported for acme" in out
    assert Customer.objects.get(external_id="C1").home_branch.code == "B2"


def test_bad_input_prints_the_errors_and_exits_2(write_csv, merchant, capsys):
    path = write_csv("branches", "code,name", "B1,Main", "B1,Again", ",Nameless")

    with pytest.raises(SystemExit) as exit_info:
        call_command("import_data", "--merchant", "acme", "--branches", str(path))

    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert 'branches.csv line 3, column code: "B1" appears more than once (first on line 2)' in err
    assert "branches.csv line 4, column code: is required" in err
    assert "nothing was written" in err
    assert Branch.objects.count() == 0


def test_dry_run_writes_nothing(write_csv, merchant, capsys):
    path = write_csv("branches", "code,name", "B1,Main")

    call_command("import_data", "--merchant", "acme", "--branches", str(path), "--dry-run")

    assert "branches: 1 rows read, 1 created" in capsys.readouterr().out
    assert Branch.objects.count() == 0


def test_unknown_merchant_is_a_clear_error(write_csv, db):
    path = write_csv("branches", "code,name", "B1,Main")

    with pytest.raises(CommandError, match='No merchant with the slug "nope"') as exc:
        call_command("import_data", "--merchant", "nope", "--branches", str(path))

    assert exc.value.returncode == 2


def test_missing_file_and_no_file_are_errors(merchant, tmp_path):
    with pytest.raises(CommandError, match="no such file") as exc:
        call_command("import_data", "--merchant", "acme", "--customers", str(tmp_path / "x.csv"))
    assert exc.value.returncode == 2

    with pytest.raises(CommandError, match="Give at least one file"):
        call_command("import_data", "--merchant", "acme")


def test_create_merchant_command(capsys, db):
    call_command(
        "create_merchant", "--slug", "bean", "--name", "Bean Co", "--timezone", "Europe/Paris",
        "--currency", "eur",
    )  # fmt: skip

    merchant = Merchant.objects.get(slug="bean")
    assert (merchant.name, merchant.time_zone, merchant.currency) == (
        "Bean Co", "Europe/Paris", "EUR",
    )  # fmt: skip
    assert "Created merchant bean" in capsys.readouterr().out


def test_create_merchant_command_rejects_unknown_time_zone(db):
    with pytest.raises(CommandError, match='time_zone: "Mars/Olympus" is not a known') as exc:
        call_command("create_merchant", "--slug", "x", "--name", "X", "--timezone", "Mars/Olympus")

    assert exc.value.returncode == 2


@pytest.mark.django_db(transaction=True)
def test_exit_codes_from_a_real_process(tmp_path):
    """The exit status seen by a shell: 0 on success, 2 on bad input or unknown merchant."""
    from django.db import connection

    env = {**os.environ}
    settings_dict = connection.settings_dict
    if connection.vendor == "sqlite":
        env["DATABASE_URL"] = f"sqlite:///{settings_dict['NAME']}"
        if "memory" in str(settings_dict["NAME"]) or not str(settings_dict["NAME"]).startswith("/"):
            pytest.skip("the SQLite test database is in memory: no other process can see it")
    else:
        env["DATABASE_URL"] = (
            f"postgres://{settings_dict['USER']}@{settings_dict['HOST']}:{settings_dict['PORT']}"
            f"/{settings_dict['NAME']}"
        )
    Merchant.objects.create(slug="proc", name="Proc", time_zone="UTC")
    good = tmp_path / "branches.csv"
    good.write_text("code,name\nB1,Main\n")
    bad = tmp_path / "bad" / "branches.csv"
    bad.parent.mkdir()
    bad.write_text("code,name\nB1,\n")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", "import_data", *args],
            cwd=ROOT, env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip

    ok = run("--merchant", "proc", "--branches", str(good))
    assert ok.returncode == 0, ok.stderr
    assert "branches: 1 rows read, 1 created" in ok.stdout

    failed = run("--merchant", "proc", "--branches", str(bad))
    assert failed.returncode == 2
    assert "branches.csv line 2, column name: is required" in failed.stderr

    unknown = run("--merchant", "nope", "--branches", str(good))
    assert unknown.returncode == 2
    assert 'No merchant with the slug "nope"' in unknown.stderr
