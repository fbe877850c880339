"""The upload page: a dry-run preview first, then the import on confirmation."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from customers.imports import upload_root
from customers.models import Branch, Customer, Role
from customers.portal.middleware import SESSION_KEY as MERCHANT_SESSION_KEY
from tests.factories import DEMO_PASSWORD, StaffMembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

IMPORT_URL = reverse("customers:import")
CONFIRM_URL = reverse("customers:import_confirm")
CANCEL_URL = reverse("customers:import_cancel")


def _client_for(merchant, role: str, username: str) -> Client:
    user = UserFactory(username=username)
    StaffMembershipFactory(user=user, merchant=merchant, role=role)
    client = Client()
    assert client.login(username=username, password=DEMO_PASSWORD)
    return client


@pytest.fixture
def owner_client(merchant) -> Client:
    return _client_for(merchant, Role.OWNER, "owner")


def _csv(name: str, text: str) -> SimpleUploadedFile:
    return SimpleUploadedFile(f"{name}.csv", text.encode(), content_type="text/csv")


def _upload(client: Client, **files: str):
    return client.post(IMPORT_URL, {kind: _csv(kind, text) for kind, text in files.items()})


GOOD = {
    "branches": "code,name\nB1,Main\n",
    "customers": "external_id,joined_at,home_branch\nC1,2024-01-01,B1\nC2,2024-01-02,\n",
}


def test_the_form_has_one_file_input_per_contract_file(owner_client):
    response = owner_client.get(IMPORT_URL)

    assert response.status_code == 200
    html = response.content.decode()
    for kind in ("branches", "products", "customers", "transactions", "items", "redemptions"):
        assert f'name="{kind}"' in html
    assert 'enctype="multipart/form-data"' in html


def test_submitting_without_files_shows_an_error(owner_client):
    response = owner_client.post(IMPORT_URL, {})

    assert response.status_code == 200
    assert "Choose at least one file to import." in response.content.decode()


def test_preview_shows_counts_and_writes_nothing(owner_client):
    # when
    response = _upload(owner_client, **GOOD)

    # then
    assert response.status_code == 200
    assert response.templates[0].name == "customers/import_preview.html"
    counts = {row["file"]: row["counts"] for row in response.context["rows"]}
    assert (counts["customers.csv"].rows, counts["customers.csv"].created) == (2, 2)
    assert "Import now" in response.content.decode()
    assert Branch.objects.count() == 0
    assert Customer.objects.count() == 0
    assert (upload_root() / response.context["token"] / "customers.csv").is_file()


def test_preview_lists_errors_and_offers_no_import(owner_client):
    response = _upload(owner_client, customers="external_id,email,joined_at\nC1,bob@,2024-01-01\n")

    html = response.content.decode()
    assert "nothing was written" in html
    assert "customers.csv" in html and "<td>2</td>" in html
    assert "is not a valid email address" in html
    assert "Import now" not in html
    assert Customer.objects.count() == 0
    assert not any(upload_root().iterdir())


def test_confirm_imports_and_deletes_the_files(owner_client, merchant):
    # given
    token = _upload(owner_client, **GOOD).context["token"]

    # when
    response = owner_client.post(CONFIRM_URL, {"token": token})

    # then
    assert response.status_code == 200
    assert response.templates[0].name == "customers/import_result.html"
    assert Customer.objects.filter(merchant=merchant).count() == 2
    assert Customer.objects.get(external_id="C1").home_branch.code == "B1"
    messages = [str(m) for m in response.context["messages"]]
    assert any(m.startswith("Import done: branches: 1 rows read, 1 created") for m in messages)
    assert not (upload_root() / token).exists()
    # the token is spent
    assert owner_client.post(CONFIRM_URL, {"token": token}).status_code == 404


def test_cancel_deletes_the_files_and_writes_nothing(owner_client):
    token = _upload(owner_client, **GOOD).context["token"]

    response = owner_client.post(CANCEL_URL, {"token": token})

    assert response.status_code == 302
    assert not (upload_root() / token).exists()
    assert Customer.objects.count() == 0
    assert owner_client.post(CONFIRM_URL, {"token": token}).status_code == 404


def test_managers_may_import(merchant):
    client = _client_for(merchant, Role.MANAGER, "manager")

    assert client.get(IMPORT_URL).status_code == 200


def test_staff_role_gets_403(merchant):
    client = _client_for(merchant, Role.STAFF, "clerk")

    assert client.get(IMPORT_URL).status_code == 403
    assert (
        client.post(IMPORT_URL, {"branches": _csv("branches", GOOD["branches"])}).status_code == 403
    )
    assert client.post(CONFIRM_URL, {"token": "x" * 32}).status_code == 403
    assert Branch.objects.count() == 0


def test_anonymous_users_are_sent_to_log_in(db):
    response = Client().get(IMPORT_URL)

    assert response.status_code == 302
    assert "login" in response["Location"]


def test_another_users_token_cannot_confirm(owner_client, merchant):
    # given: the owner's upload, and a colleague of the same merchant who learnt the token
    token = _upload(owner_client, **GOOD).context["token"]
    colleague = _client_for(merchant, Role.OWNER, "colleague")

    # when
    response = colleague.post(CONFIRM_URL, {"token": token})

    # then
    assert response.status_code == 404
    assert colleague.post(CANCEL_URL, {"token": token}).status_code == 404
    assert Customer.objects.count() == 0
    assert (upload_root() / token).exists()


def test_a_token_of_another_merchant_cannot_confirm(merchant, other_merchant):
    # given: a user of both merchants uploads while working on the first one
    user = UserFactory(username="both")
    StaffMembershipFactory(user=user, merchant=merchant, role=Role.OWNER)
    StaffMembershipFactory(user=user, merchant=other_merchant, role=Role.OWNER)
    client = Client()
    assert client.login(username="both", password=DEMO_PASSWORD)
    session = client.session
    session[MERCHANT_SESSION_KEY] = merchant.pk
    session.save()
    token = _upload(client, **GOOD).context["token"]

    # when: they switch to the other merchant and confirm
    session = client.session
    session[MERCHANT_SESSION_KEY] = other_merchant.pk
    session.save()
    response = client.post(CONFIRM_URL, {"token": token})

    # then: nothing is imported into either merchant
    assert response.status_code == 404
    assert Customer.objects.count() == 0


def test_a_forged_token_is_404(owner_client):
    assert owner_client.post(CONFIRM_URL, {"token": "../../etc"}).status_code == 404
    assert owner_client.post(CONFIRM_URL, {}).status_code == 404


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("C1,9999-12-31T23:00:00-05:00", "is out of range"),
        ("C1,0001-01-01T00:00:00+09:00", "is out of range"),
        ("C\x001,2024-01-01T10:00:00", "contains a NUL character"),
    ],
)
def test_values_no_database_can_hold_are_previewed_as_errors(owner_client, merchant, row, message):
    response = _upload(owner_client, customers=f"external_id,joined_at\n{row}\n")

    assert response.status_code == 200
    assert message in response.content.decode()
    assert response.context["token"] == ""
    assert not Customer.objects.filter(merchant=merchant).exists()
