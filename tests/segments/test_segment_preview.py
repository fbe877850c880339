"""`manage.py segment_preview`, as the contract's command-line section states it."""

from __future__ import annotations

import datetime as dt
import io
import json
from unittest import mock

import pytest
from django.core.management import call_command

from segments.management.commands.segment_preview import Command
from tests.factories import CustomerFactory, TransactionFactory
from tests.segments.conftest import AS_OF, cond, rules

pytestmark = pytest.mark.django_db
SPENDERS = rules(cond("total_spend", "gte", 100))


@pytest.fixture
def shoppers(merchant, other_merchant):
    for ext in ("C3", "C1", "C2"):
        c = CustomerFactory(merchant=merchant, external_id=ext)
        TransactionFactory(customer=c, occurred_at=AS_OF - dt.timedelta(days=1), total=150)
    late = CustomerFactory(merchant=merchant, external_id="C4")
    TransactionFactory(customer=late, occurred_at=AS_OF + dt.timedelta(hours=2), total=150)
    CustomerFactory(merchant=merchant, external_id="C0")
    rival = CustomerFactory(merchant=other_merchant, external_id="C9")
    TransactionFactory(customer=rival, occurred_at=AS_OF - dt.timedelta(days=1), total=999)


@pytest.fixture
def rules_file(tmp_path):
    def write(data, name="rules.json"):
        path = tmp_path / name
        path.write_text(data if isinstance(data, str) else json.dumps(data))
        return str(path)

    return write


def preview(*args: str) -> str:
    out = io.StringIO()
    call_command("segment_preview", *args, stdout=out)
    return out.getvalue()


def run_cli(*args: str) -> int:
    """Run as manage.py would (stderr, exit status) and return the exit status."""
    # run_from_argv closes every connection when done, which would end the test's own
    # PostgreSQL connection (and its transaction) under the test's feet.
    with (
        mock.patch("django.core.management.base.connections.close_all"),
        pytest.raises(SystemExit) as info,
    ):
        Command().run_from_argv(["manage.py", "segment_preview", *args])
    code = info.value.code
    assert isinstance(code, int)
    return code


def test_prints_the_count(shoppers, rules_file):
    assert preview("--merchant", "acme", "--rules", rules_file(SPENDERS)) == "4\n"


def test_ids_one_per_line_ascending(shoppers, rules_file):
    assert preview("--merchant", "acme", "--rules", rules_file(SPENDERS), "--ids") == (
        "C1\nC2\nC3\nC4\n"
    )


def test_as_of_with_and_without_offset(shoppers, rules_file):
    path = rules_file(SPENDERS)
    assert preview("--merchant", "acme", "--rules", path, "--as-of", AS_OF.isoformat()) == "3\n"
    # 12:00 without an offset is Toronto time, i.e. AS_OF: C4's 14:00 order is later.
    assert preview("--merchant", "acme", "--rules", path, "--as-of", "2026-06-15T12:00") == "3\n"
    assert preview("--merchant", "acme", "--rules", path, "--as-of", "2026-06-15T14:30") == "4\n"


def test_rules_from_stdin(shoppers, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(SPENDERS)))
    assert preview("--merchant", "acme", "--rules", "-", "--ids") == "C1\nC2\nC3\nC4\n"


def test_validation_error_goes_to_stderr_with_exit_2(shoppers, rules_file, capsys):
    bad = rules(cond("age", "gte", 1), rules(cond("total_spend", "gtee", 1)))
    assert run_cli("--merchant", "acme", "--rules", rules_file(bad)) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert 'conditions[1].conditions[0].op: "gtee" is not an operator of total_spend' in (
        captured.err
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--merchant", "nobody"], 'unknown merchant "nobody"'),
        (["--merchant", "acme", "--as-of", "yesterday"], '"yesterday" is not an ISO 8601'),
    ],
)
def test_unknown_merchant_and_bad_as_of_exit_2(shoppers, rules_file, capsys, args, message):
    assert run_cli(*args, "--rules", rules_file(SPENDERS)) == 2
    assert message in capsys.readouterr().err


def test_unreadable_json_exits_2(merchant, rules_file, capsys, tmp_path):
    assert run_cli("--merchant", "acme", "--rules", rules_file("{not json")) == 2
    assert "rules: not JSON" in capsys.readouterr().err
    assert run_cli("--merchant", "acme", "--rules", str(tmp_path / "missing.json")) == 2
