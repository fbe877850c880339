"""The rate limit per token: `API_RATE_LIMIT` requests a minute, counted in Django's cache in
fixed one-minute windows; over it, 429 with Retry-After and the errors body."""

from __future__ import annotations

import pytest

from customers.api_tokens import api_token_create
from customers.models import ApiTokenScope
from customers.portal.api import TOKEN_RATE
from tests.api.conftest import ApiClient, error_paths

#: A minute's window starts at a multiple of 60 s: 20 s into one, 40 s before the next.
START = 1_800_000_000.0 + 20


@pytest.fixture
def clock(monkeypatch):
    """The throttle's time, pinned; `clock.now += 60` moves it."""

    class Clock:
        now = START

        def __call__(self) -> float:
            return self.now

    pinned = Clock()
    monkeypatch.setattr(TOKEN_RATE, "clock", pinned)
    return pinned


@pytest.fixture
def limit_of_three(settings):
    settings.API_RATE_LIMIT = 3


@pytest.mark.django_db
def test_over_the_limit_a_token_gets_429_with_retry_after_and_the_errors_body(
    reader, clock, limit_of_three
):
    # given three requests, the limit
    answers = [reader.get("/api/v1/segments") for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [a["RateLimit-Remaining"] for a in answers] == ["2", "1", "0"]
    assert answers[0]["RateLimit-Limit"] == "3"
    assert answers[0]["RateLimit-Reset"] == "40"

    # when a fourth comes within the minute
    response = reader.get("/api/v1/segments")

    # then
    assert response.status_code == 429
    assert response["Retry-After"] == "40"
    assert response["RateLimit-Remaining"] == "0"
    assert error_paths(response) == [""]
    message = response.json()["errors"][0]["message"]
    assert "at most 3 a minute" in message and "40 seconds" in message


@pytest.mark.django_db
def test_a_write_is_limited_too_and_refused_before_it_writes(writer, clock, limit_of_three):
    body = {"joined_at": "2024-01-02T10:00:00Z", "first_name": "Ann"}
    for number in range(3):
        assert writer.put(f"/api/v1/customers/C{number}", body).status_code == 201

    response = writer.put("/api/v1/customers/C9", body)

    assert response.status_code == 429
    assert writer.get("/api/v1/customers/C9").status_code == 429  # still limited, still 429
    clock.now += 60
    assert writer.get("/api/v1/customers/C9").status_code == 404  # never written


@pytest.mark.django_db
def test_another_token_is_not_affected(merchant, reader, clock, limit_of_three):
    for _ in range(4):
        reader.get("/api/v1/segments")
    assert reader.get("/api/v1/segments").status_code == 429
    other = ApiClient(api_token_create(merchant=merchant, name="b", scope=ApiTokenScope.READ)[1])

    response = other.get("/api/v1/segments")

    assert response.status_code == 200
    assert response["RateLimit-Remaining"] == "2"


@pytest.mark.django_db
def test_the_count_starts_again_in_the_next_window(reader, clock, limit_of_three):
    for _ in range(3):
        reader.get("/api/v1/segments")
    clock.now += 39  # one second before the window ends
    refused = reader.get("/api/v1/segments")
    assert refused.status_code == 429
    assert refused["Retry-After"] == "1"

    clock.now += 1  # the next minute's window

    response = reader.get("/api/v1/segments")
    assert response.status_code == 200
    assert response["RateLimit-Remaining"] == "2"
    assert response["RateLimit-Reset"] == "60"


@pytest.mark.django_db
def test_zero_switches_the_limit_off(reader, clock, settings):
    settings.API_RATE_LIMIT = 0

    answers = [reader.get("/api/v1/segments") for _ in range(5)]

    assert {a.status_code for a in answers} == {200}
    assert "RateLimit-Limit" not in answers[-1]


@pytest.mark.django_db
def test_an_unauthenticated_request_is_answered_401_and_not_counted(reader, clock, limit_of_three):
    stranger = ApiClient("sp_not_a_token")
    assert {stranger.get("/api/v1/segments").status_code for _ in range(5)} == {401}

    assert reader.get("/api/v1/segments")["RateLimit-Remaining"] == "2"


def test_the_openapi_document_lists_the_429_answer(client):
    document = client.get("/api/v1/openapi.json").json()

    assert "429" in document["paths"]["/api/v1/segments"]["get"]["responses"]
