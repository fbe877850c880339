"""The synthetic data process: deterministic per seed, and shaped like a real merchant."""

import datetime as dt
from collections import Counter, defaultdict
from datetime import date

import pytest

from customers.synthetic import (
    CUSTOMER_FIELDS,
    ITEM_FIELDS,
    REDEMPTION_FIELDS,
    TRANSACTION_FIELDS,
    Chunk,
    SyntheticDataset,
)

NOW = dt.datetime(2026, 6, 15, 18, 30, tzinfo=dt.UTC)
C = {name: i for i, name in enumerate(CUSTOMER_FIELDS)}
T = {name: i for i, name in enumerate(TRANSACTION_FIELDS)}
I = {name: i for i, name in enumerate(ITEM_FIELDS)}  # noqa: E741
R = {name: i for i, name in enumerate(REDEMPTION_FIELDS)}


def collect(dataset: SyntheticDataset, chunk_size: int = 5000) -> Chunk:
    """All chunks' rows in one Chunk (fine at test sizes)."""
    whole = Chunk()
    for chunk in dataset.iter_chunks(chunk_size):
        whole.customers += chunk.customers
        whole.customer_tags += chunk.customer_tags
        whole.transactions += chunk.transactions
        whole.items += chunk.items
        whole.redemptions += chunk.redemptions
    return whole


@pytest.fixture(scope="module")
def dataset() -> SyntheticDataset:
    return SyntheticDataset(customers=500, seed=1, now=NOW, time_zone="America/Toronto")


@pytest.fixture(scope="module")
def rows(dataset) -> Chunk:
    return collect(dataset)


def test_same_seed_gives_the_same_rows_whatever_the_chunk_size(rows):
    again = SyntheticDataset(customers=500, seed=1, now=NOW, time_zone="America/Toronto")

    assert collect(again, chunk_size=37) == rows


def test_another_seed_gives_other_rows(rows):
    other = collect(SyntheticDataset(customers=500, seed=2, now=NOW, time_zone="America/Toronto"))

    assert other.customers != rows.customers
    assert other.transactions != rows.transactions


def test_catalogue_has_branches_a_few_hundred_products_and_the_contract_examples(dataset):
    catalogue = dataset.catalogue

    assert [b.code for b in catalogue.branches] == ["DT", "WE", "AP"]
    assert 200 <= len(catalogue.products) <= 500
    assert len({p.sku for p in catalogue.products}) == len(catalogue.products)
    types = {p.product_type for p in catalogue.products}
    assert {"preroll", "flower", "edible", "vape", "concentrate", "beverage"} <= types
    assert any(p.brand == "Phat Panda" and p.product_type == "preroll" for p in catalogue.products)
    assert len({p.brand for p in catalogue.products}) >= 12
    assert "Edibles" in {p.category for p in catalogue.products}
    assert all(p.price_cents > 0 for p in catalogue.products)
    assert [t.name for t in catalogue.tiers] == ["Bronze", "Silver", "Gold", "Platinum"]
    assert {"vip", "staff", "local", "tourist", "newsletter", "wholesale"} <= set(catalogue.tags)


def test_averages_are_about_ten_orders_and_twenty_five_items_per_customer(rows):
    per_customer = len(rows.transactions) / len(rows.customers)
    items_per_customer = len(rows.items) / len(rows.customers)

    assert 7 <= per_customer <= 13
    assert 17 <= items_per_customer <= 33


def test_some_customers_never_order_many_order_once_and_about_three_percent_are_refunds(rows):
    orders = Counter(t[T["customer"]] for t in rows.transactions if not t[T["is_refund"]])
    never = sum(1 for c in rows.customers if orders[c[C["index"]]] == 0)
    once = sum(1 for c in rows.customers if orders[c[C["index"]]] == 1)
    refunds = sum(1 for t in rows.transactions if t[T["is_refund"]])

    assert 0.03 <= never / len(rows.customers) <= 0.15
    assert 0.10 <= once / len(rows.customers) <= 0.35
    assert 0.015 <= refunds / len(rows.transactions) <= 0.05
    assert max(orders.values()) >= 50  # the heavy buyers of a Gamma-distributed rate


def test_purchases_lie_between_joining_and_now_within_three_years(rows):
    now = int(NOW.timestamp())
    start = now - 3 * 365 * 86400
    joined = {c[C["index"]]: c[C["joined_at"]] for c in rows.customers}

    assert all(start <= j <= now for j in joined.values())
    for t in rows.transactions:
        assert joined[t[T["customer"]]] <= t[T["occurred_at"]] <= now
    for r in rows.redemptions:
        assert joined[r[R["customer"]]] <= r[R["redeemed_at"]] <= now


def test_line_items_sum_to_their_transaction_total(rows):
    sums: dict[int, int] = defaultdict(int)
    for item in rows.items:
        assert item[I["quantity"]] >= 1
        sums[item[I["transaction"]]] += item[I["amount_cents"]]

    assert all(sums[t[T["index"]]] == t[T["total_cents"]] for t in rows.transactions)
    assert all(t[T["total_cents"]] > 0 for t in rows.transactions)


def test_most_transactions_happen_at_the_home_branch(rows):
    home = {c[C["index"]]: c[C["home_branch"]] for c in rows.customers}
    with_home = [t for t in rows.transactions if home[t[T["customer"]]] >= 0]
    at_home = sum(1 for t in with_home if t[T["branch"]] == home[t[T["customer"]]])

    assert at_home / len(with_home) >= 0.8


def test_points_balance_is_lifetime_points_minus_redemptions(rows):
    earned: dict[int, int] = defaultdict(int)
    redeemed: dict[int, int] = defaultdict(int)
    for t in rows.transactions:
        earned[t[T["customer"]]] += t[T["points_earned"]]
        redeemed[t[T["customer"]]] += t[T["points_redeemed"]]
    by_redemption: dict[int, int] = defaultdict(int)
    for r in rows.redemptions:
        by_redemption[r[R["customer"]]] += r[R["points"]]

    assert rows.redemptions
    for c in rows.customers:
        i = c[C["index"]]
        assert c[C["lifetime_points"]] == earned[i]
        assert c[C["points_balance"]] == earned[i] - redeemed[i] >= 0
        assert redeemed[i] == by_redemption[i]


def test_profiles_vary_and_some_birth_dates_are_missing(rows):
    genders = Counter(c[C["gender"]] for c in rows.customers)
    types = Counter(c[C["customer_type"]] for c in rows.customers)
    births = [c[C["birth_date"]] for c in rows.customers]
    ages = [(NOW.date() - date.fromisoformat(b)).days / 365.25 for b in births if b]

    assert set(genders) == {"female", "male", "other", "unspecified"}
    assert types["regular"] > types["medical"] > 0
    assert 0 < births.count(None) < len(births) / 4
    assert min(ages) >= 19
    assert len({c[C["email"]] for c in rows.customers}) == len(rows.customers)
    assert {c[C["tier"]] for c in rows.customers} >= {-1, 0, 1}  # no orders: no tier
    assert len({tag for _, tag in rows.customer_tags}) >= 8


def test_a_dataset_of_no_customers_is_empty():
    assert list(SyntheticDataset(customers=0, now=NOW).iter_chunks()) == []


def test_now_must_be_aware():
    with pytest.raises(ValueError, match="aware"):
        SyntheticDataset(customers=1, now=dt.datetime(2026, 1, 1))
