"""The files of the contract: their columns, keys, staging tables and references
(`shared/spec/import-format.md`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from customers.imports.cells import (
    Converter,
    boolean_cell,
    date_cell,
    email_cell,
    gender_cell,
    integer_cell,
    kind_cell,
    money_cell,
    phone_cell,
    text_cell,
    timestamp_cell,
)
from customers.models import (
    Branch,
    Customer,
    Product,
    Transaction,
)

#: The contract's files, in the order they are imported (each may refer to the earlier ones).
FILE_ORDER: tuple[str, ...] = (
    "branches",
    "products",
    "customers",
    "transactions",
    "items",
    "redemptions",
)

if TYPE_CHECKING:
    from customers.imports.reading import RowConverters


# Staged column types: converter output -> (PostgreSQL type, SQLite type). The SQLite types
# give staging columns the same affinity as Django's columns, so values compare equal.
SQL_TYPES: dict[str, tuple[str, str]] = {
    "text": ("text", "text"),
    "int": ("bigint", "integer"),
    "money": ("numeric(14,2)", "decimal"),
    "ts": ("timestamptz", "datetime"),
    "date": ("date", "date"),
    "bool": ("boolean", "bool"),
}


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str  # a key of SQL_TYPES
    required: bool = False
    #: Builds the converter; gets `RowConverters` (time zone, tags, tiers) of the merchant.
    converter: Callable[[RowConverters], Converter] = lambda ctx: text_cell(100)


def _fixed(converter: Converter) -> Callable[[RowConverters], Converter]:
    return lambda ctx: converter


def _text_col(name: str, max_length: int, required: bool = False) -> Column:
    return Column(name, "text", required, _fixed(text_cell(max_length)))


def _ts_col(name: str, required: bool = False) -> Column:
    return Column(name, "ts", required, lambda ctx: timestamp_cell(ctx.merchant.tzinfo))


def _int_col(name: str, required: bool = False, minimum: int = 0) -> Column:
    return Column(name, "int", required, _fixed(integer_cell(minimum)))


@dataclass(frozen=True)
class FileSpec:
    name: str
    columns: tuple[Column, ...]
    key: str | None

    @property
    def table(self) -> str:
        return f"sp_imp_{self.name}"

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


SPECS: dict[str, FileSpec] = {
    spec.name: spec
    for spec in (
        FileSpec(
            "branches",
            (_text_col("code", 64, required=True), _text_col("name", 200, required=True)),
            key="code",
        ),
        FileSpec(
            "products",
            (
                _text_col("sku", 100, required=True),
                _text_col("name", 200, required=True),
                _text_col("product_type", 100),
                _text_col("brand", 100),
                _text_col("category", 100),
                Column("price", "money", False, _fixed(money_cell)),
            ),
            key="sku",
        ),
        FileSpec(
            "customers",
            (
                _text_col("external_id", 100, required=True),
                _text_col("first_name", 100),
                _text_col("last_name", 100),
                Column("email", "text", False, _fixed(email_cell)),
                Column("phone", "text", False, _fixed(phone_cell)),
                Column("gender", "text", False, _fixed(gender_cell)),
                Column("birth_date", "date", False, _fixed(date_cell)),
                _text_col("customer_type", 100),
                # Staged as "a tags cell was given"; the tag ids go to a side table.
                Column("tags", "bool", False, lambda ctx: ctx.convert_tags),
                # Staged as the tier's id (tiers are created while reading).
                Column("tier", "int", False, lambda ctx: ctx.convert_tier),
                _ts_col("joined_at", required=True),
                _text_col("home_branch", 64),
                Column("email_opt_in", "bool", False, _fixed(boolean_cell)),
                Column("sms_opt_in", "bool", False, _fixed(boolean_cell)),
                Column("push_opt_in", "bool", False, _fixed(boolean_cell)),
                _int_col("points_balance"),
                _int_col("lifetime_points"),
                _ts_col("last_contacted_at"),
            ),
            key="external_id",
        ),
        FileSpec(
            "transactions",
            (
                _text_col("external_id", 100, required=True),
                _text_col("customer_external_id", 100, required=True),
                _ts_col("occurred_at", required=True),
                Column("kind", "text", False, _fixed(kind_cell)),
                Column("total", "money", True, _fixed(money_cell)),
                _text_col("branch", 64),
                _int_col("points_earned"),
                _int_col("points_redeemed"),
            ),
            key="external_id",
        ),
        FileSpec(
            "items",
            (
                _text_col("transaction_external_id", 100, required=True),
                _text_col("sku", 100, required=True),
                _int_col("quantity", required=True, minimum=1),
                Column("amount", "money", True, _fixed(money_cell)),
            ),
            key=None,
        ),
        FileSpec(
            "redemptions",
            (
                _text_col("external_id", 100, required=True),
                _text_col("customer_external_id", 100, required=True),
                _text_col("reward", 200, required=True),
                _int_col("points"),
                _ts_col("redeemed_at", required=True),
            ),
            key="external_id",
        ),
    )
}

#: The contract's column names per file, in contract order (the generator writes these).
CONTRACT_COLUMNS: dict[str, tuple[str, ...]] = {
    name: tuple(column.name for column in spec.columns) for name, spec in SPECS.items()
}

# (file, column, referenced file, referenced model, its key column, what it is called)
REFERENCES: tuple[tuple[str, str, str, type[Any], str, str], ...] = (
    ("customers", "home_branch", "branches", Branch, "code", "branch"),
    ("transactions", "customer_external_id", "customers", Customer, "external_id", "customer"),
    ("transactions", "branch", "branches", Branch, "code", "branch"),
    ("items", "transaction_external_id", "transactions", Transaction, "external_id", "transaction"),
    ("items", "sku", "products", Product, "sku", "product"),
    ("redemptions", "customer_external_id", "customers", Customer, "external_id", "customer"),
)

TAGS_TABLE = "sp_imp_customer_tags"
