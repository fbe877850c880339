"""What the benchmarks that time portal requests share: Django set up with production
settings (DEBUG off, cached templates), static files without a collectstatic manifest, and
a test client signed in as an owner of the merchant.

Import it before anything that needs Django: `import portal_setup` sets Django up.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Production mode: the pages as a deployment serves them.
os.environ.setdefault("DJANGO_DEBUG", "0")
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-not-a-secret")
os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "testserver")
os.environ.setdefault("DJANGO_SECURE_SSL_REDIRECT", "0")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.test import Client  # noqa: E402

from customers.models import Merchant, Role, StaffMembership  # noqa: E402


def use_plain_static_files() -> None:
    """Render {% static %} without a collectstatic manifest (as the tests do)."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


def owner_client(merchant: Merchant, username: str) -> Client:
    """A test client signed in as `username`, made an owner of `merchant` if need be."""
    user, _ = get_user_model().objects.get_or_create(username=username)
    StaffMembership.objects.get_or_create(
        user=user, merchant=merchant, defaults={"role": Role.OWNER}
    )
    client = Client()
    # force_login: sign-in throttling (django-axes) needs a request, which login() lacks.
    client.force_login(user)
    return client
