"""The segment lock between a refresh and an edit, with two real connections (PostgreSQL)."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest
from django.db import connection, connections

from segments.models import Segment, SegmentMembership
from segments.services import refresh, seams, segment_refresh, segment_update
from tests.factories import CustomerFactory, TransactionFactory
from tests.segments.refresh_helpers import fake_matching, install_fake_engine, make_segment
from tests.segments.refresh_helpers import spend_rules as spend

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="needs a second connection to the test database"
    ),
]


@pytest.fixture(autouse=True)
def fake_engine(monkeypatch):
    install_fake_engine(monkeypatch)


def edit_in_another_connection(segment_id, done):
    try:
        segment_update(segment=Segment.objects.get(pk=segment_id), rules=spend(1000))
        done.append(time.monotonic())
    finally:
        connections.close_all()


def test_an_edit_waits_for_the_refresh_holding_the_lock_then_bumps_the_version(
    merchant, monkeypatch
):
    # given
    customer = CustomerFactory(merchant=merchant)
    TransactionFactory(customer=customer, total=Decimal("500"))
    segment = make_segment(merchant, "big", spend(100))
    done: list[float] = []
    editor = threading.Thread(target=edit_in_another_connection, args=(segment.pk, done))
    blocked = []

    def compute_while_an_edit_arrives(locked, as_of):
        if editor.is_alive() or done:
            # The edit's own refresh, queued on its commit, runs in the editor's thread.
            return fake_matching(locked, as_of)
        editor.start()
        time.sleep(0.5)
        blocked.append(not done)  # the edit is waiting for our lock
        return fake_matching(locked, as_of)

    monkeypatch.setattr(seams, "matching_queryset", compute_while_an_edit_arrives)

    # when
    result = segment_refresh(segment_id=segment.pk)
    editor.join(timeout=10)

    # then: the refresh wrote the old rules' result; the edit came after it and its own
    # refresh (run in-process on commit) applied the new rules
    assert result.status == "ok"
    assert blocked == [True]
    assert done
    events = customer.segment_events.order_by("id").values_list("kind", "definition_version")
    assert list(events) == [("entry", 1), ("exit", 2)]
    segment.refresh_from_db()
    assert (segment.definition_version, segment.refresh_status) == (2, "ok")
    assert segment.member_count == 0


def test_an_edit_committed_after_the_start_supersedes_the_refresh(merchant, monkeypatch):
    # given
    customer = CustomerFactory(merchant=merchant)
    TransactionFactory(customer=customer, total=Decimal("500"))
    segment = make_segment(merchant, "big", spend(100))
    original_start = refresh.refresh_start

    def start_then_edit_elsewhere(segment_id):
        started = original_start(segment_id)
        editor = threading.Thread(target=edit_in_another_connection, args=(segment_id, []))
        editor.start()
        editor.join(timeout=10)
        return started

    monkeypatch.setattr(refresh, "refresh_start", start_then_edit_elsewhere)

    # when
    result = segment_refresh(segment_id=segment.pk)

    # then: the stale refresh wrote nothing; the edit's own refresh applied the new rules
    assert result.status == "superseded"
    assert not SegmentMembership.objects.filter(segment=segment).exists()
    assert not customer.segment_events.exists()
    segment.refresh_from_db()
    assert (segment.definition_version, segment.refresh_status) == (2, "ok")
