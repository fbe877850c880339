"""A model field the per-customer row needs and Django has only for PostgreSQL.

`IdListField` holds a sorted list of ids (a customer's tag ids). On PostgreSQL it is an
`bigint[]` column, matched in SQL with `&&` (overlaps) under a GIN index, so "has any of
these tags" is a filter on the customer's own row instead of a join. On SQLite, the embedded
database, it is the same list as JSON text; the segment engine matches tags through the
`CustomerTag` rows there (`segments.criteria.profile.TagsCriterion`).
"""

from __future__ import annotations

import json
from typing import Any

from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Lookup
from django.db.models.sql.compiler import SQLCompiler


class IdListField(models.Field):
    description = "A sorted list of integer ids (bigint[] on PostgreSQL, JSON on SQLite)"

    def db_type(self, connection: BaseDatabaseWrapper) -> str:
        return "bigint[]" if connection.vendor == "postgresql" else "text"

    def from_db_value(self, value: Any, expression: Any, connection: BaseDatabaseWrapper) -> Any:
        if value is None or isinstance(value, list):
            return value
        return json.loads(value)

    def to_python(self, value: Any) -> Any:
        if isinstance(value, str):
            return json.loads(value)
        return value

    def get_db_prep_value(
        self, value: Any, connection: BaseDatabaseWrapper, prepared: bool = False
    ) -> Any:
        if value is None:
            return None
        ids = sorted({int(v) for v in value})
        return ids if connection.vendor == "postgresql" else json.dumps(ids)


@IdListField.register_lookup
class Overlaps(Lookup):
    """`ids__overlaps=<expression giving bigint[]>`: the lists share an id (PostgreSQL)."""

    lookup_name = "overlaps"

    def as_sql(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper) -> tuple[str, Any]:
        if connection.vendor != "postgresql":
            raise NotImplementedError("the overlaps lookup needs PostgreSQL arrays")
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        return f"{lhs} && {rhs}", [*lhs_params, *rhs_params]


@IdListField.register_lookup
class ContainsAll(Lookup):
    """`ids__contains_all=<expression giving bigint[]>`: every id of the right-hand list is
    in the list (PostgreSQL `@>`)."""

    lookup_name = "contains_all"

    def as_sql(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper) -> tuple[str, Any]:
        if connection.vendor != "postgresql":
            raise NotImplementedError("the contains_all lookup needs PostgreSQL arrays")
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        return f"{lhs} @> {rhs}", [*lhs_params, *rhs_params]
