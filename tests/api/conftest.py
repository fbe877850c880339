import json

import pytest
from django.test import Client

from customers.api_tokens import api_token_create
from customers.models import ApiTokenScope


class ApiClient:
    """Django's test client speaking JSON with a bearer token."""

    def __init__(self, token: str | None) -> None:
        self.client = Client(enforce_csrf_checks=True)
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def get(self, path, **headers):
        return self.client.get(path, headers={**self.headers, **headers})

    def put(self, path, body, **headers):
        data = body if isinstance(body, str | bytes) else json.dumps(body)
        return self.client.put(
            path, data=data, content_type="application/json", headers={**self.headers, **headers}
        )


@pytest.fixture
def write_token(merchant):
    return api_token_create(merchant=merchant, name="pos", scope=ApiTokenScope.WRITE)[1]


@pytest.fixture
def read_token(merchant):
    return api_token_create(merchant=merchant, name="app", scope=ApiTokenScope.READ)[1]


@pytest.fixture
def writer(write_token):
    return ApiClient(write_token)


@pytest.fixture
def reader(read_token):
    return ApiClient(read_token)


@pytest.fixture
def rival_writer(other_merchant):
    return ApiClient(
        api_token_create(merchant=other_merchant, name="pos", scope=ApiTokenScope.WRITE)[1]
    )


def error_paths(response):
    body = response.json()
    assert set(body) == {"errors"}, body
    for error in body["errors"]:
        assert set(error) == {"path", "message"} and error["message"], error
    return [error["path"] for error in body["errors"]]
