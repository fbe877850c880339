"""Who may call the API: a bearer token of the merchant, write scope to write; every refusal
in the one error shape; the OpenAPI document served and valid."""

import datetime as dt
import json

import pytest
from django.utils import timezone
from openapi_spec_validator import validate

from customers.api_tokens import api_token_create, api_token_revoke
from customers.models import ApiToken
from tests.api.conftest import ApiClient, error_paths
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/customers/c-1"
BODY = {"joined_at": "2024-01-02T10:00:00"}


@pytest.fixture
def customer(merchant):
    return CustomerFactory(merchant=merchant, external_id="c-1")


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Bearer sp_not-a-token", "Basic dXNlcjpwYXNz", "sp_token-without-scheme"],
)
def test_a_request_without_a_valid_token_is_refused_with_401(customer, header):
    client = ApiClient(None)

    response = client.get(URL, **({"Authorization": header} if header else {}))

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert error_paths(response) == [""]


def test_a_revoked_token_is_refused_with_401(merchant, customer):
    token, plaintext = api_token_create(merchant=merchant, name="app")
    api_token_revoke(token=token)

    assert ApiClient(plaintext).get(URL).status_code == 401


def test_an_expired_token_is_refused_with_401(merchant, customer):
    token, plaintext = api_token_create(
        merchant=merchant, name="app", expires_at=timezone.now() + dt.timedelta(days=1)
    )
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))

    assert ApiClient(plaintext).get(URL).status_code == 401


def test_a_read_token_may_read_but_not_write(reader, customer):
    assert reader.get(URL).status_code == 200

    response = reader.put(URL, BODY)

    assert response.status_code == 403
    assert error_paths(response) == [""]
    assert "write" in response.json()["errors"][0]["message"]


def test_a_write_token_may_read_too(writer, customer):
    assert writer.get(URL).status_code == 200


def test_the_api_needs_no_csrf_token_and_sets_no_cookie(writer):
    # ApiClient enforces CSRF checks, as a browser's request would meet them.
    response = writer.put(URL, BODY)

    assert response.status_code == 201
    assert not response.cookies


@pytest.mark.parametrize("path", ["/api/v1/customers/c-1/nothing", "/api/v1/", "/api/v1/x"])
def test_an_unknown_route_under_the_api_is_a_json_404(writer, path):
    response = writer.get(path)

    assert response.status_code == 404
    assert error_paths(response) == [""]


def test_a_method_a_route_does_not_take_is_a_json_405(writer):
    response = writer.client.delete("/api/v1/customers/c-1", headers=writer.headers)

    assert response.status_code == 405
    assert set(response["Allow"].replace(" ", "").split(",")) == {"GET", "PUT"}
    assert error_paths(response) == [""]


def test_the_openapi_document_is_served_and_valid(client):
    response = client.get("/api/v1/openapi.json")

    assert response.status_code == 200
    document = json.loads(response.content)
    validate(document)
    assert document["info"]["version"] == "v1"
    operations = document["paths"]["/api/v1/customers/{external_id}"]
    assert set(operations) == {"get", "put"}
    assert document["components"]["securitySchemes"]["BearerToken"]["scheme"] == "bearer"


def test_the_interactive_docs_page_is_served_from_this_site_under_the_csp(client):
    response = client.get("/api/v1/docs")

    assert response.status_code == 200
    page = response.content.decode()
    # ninja's own template (ninja is an installed app), not its CDN one
    assert "/static/ninja/swagger-ui-bundle.js" in page
    assert "/static/ninja/swagger-ui-init.js" in page
    assert "http://" not in page and "https://" not in page
    assert '"url": "/api/v1/openapi.json"' in page
    assert '"validatorUrl": null' in page
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe" not in policy
