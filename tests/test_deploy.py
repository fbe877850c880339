"""Production settings pass Django's deployment checks and refuse to start without a secret."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow  # each test starts a Python process


def run_manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_passes_with_production_settings():
    result = run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="x7!kq" * 12,  # a long random-looking key, only for this check
        DJANGO_ALLOWED_HOSTS="portal.example.com",
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_settings_refuse_to_start_without_a_secret_key():
    result = run_manage("check", DJANGO_DEBUG="0", DJANGO_ALLOWED_HOSTS="portal.example.com")

    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr


def test_debug_is_off_unless_switched_on():
    show = "from django.conf import settings; print(settings.DEBUG)"
    unset = run_manage("shell", "-c", show, DJANGO_SECRET_KEY="x7!kq" * 12)
    on = run_manage("shell", "-c", show, DJANGO_DEBUG="1")

    assert unset.returncode == 0, unset.stderr
    assert unset.stdout.strip().splitlines()[-1] == "False"
    assert on.stdout.strip().splitlines()[-1] == "True"


def test_without_settings_it_refuses_to_start_and_says_how_to_develop():
    result = run_manage("check")

    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off (the default)" in result.stderr
    assert "DJANGO_DEBUG=1" in result.stderr
