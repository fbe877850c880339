import threading
from collections.abc import Iterator

import pytest
from django.core.cache import cache
from django.test import Client

import tests.hypothesis_profiles  # noqa: F401 - loads the Hypothesis profile
from tests.factories import DEMO_PASSWORD, MerchantFactory, StaffMembershipFactory, UserFactory
from tests.http_server import RecordingHttpServer


@pytest.fixture(autouse=True)
def _plain_static_storage(settings):
    # Tests render {% static %} without a collectstatic manifest.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # Every sign-in and every factory user hashes a password; PBKDF2's 1,000,000 rounds are
    # for real accounts, not for thousands of test sign-ins.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _no_sign_in_throttling(settings):
    # Django's test client signs in without a request, which django-axes refuses; its own
    # tests (tests/customers/test_sign_in_throttling.py) switch it back on.
    settings.AXES_ENABLED = False


@pytest.fixture(autouse=True)
def _empty_cache() -> Iterator[None]:
    # The in-memory cache outlives a test (the API's rate-limit counters are keyed by token
    # id, and ids come again after a rollback): every test starts from an empty one.
    cache.clear()
    yield


@pytest.fixture
def merchant(db):
    return MerchantFactory(slug="acme", name="Acme Cannabis", time_zone="America/Toronto")


@pytest.fixture
def other_merchant(db):
    return MerchantFactory(slug="rival", name="Rival Goods", time_zone="Europe/Paris")


@pytest.fixture
def staff_user(merchant):
    user = UserFactory(username="alice")
    StaffMembershipFactory(user=user, merchant=merchant)
    return user


@pytest.fixture
def staff_client(staff_user) -> Client:
    client = Client()
    assert client.login(username=staff_user.username, password=DEMO_PASSWORD)
    return client


@pytest.fixture
def http_server() -> Iterator[RecordingHttpServer]:
    """A local HTTP server on a free port (`.url`), answering 202 or the next of `.answers`."""
    server = RecordingHttpServer()
    # A short poll, so shutdown() at teardown does not wait half a second.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()
    thread.join()
