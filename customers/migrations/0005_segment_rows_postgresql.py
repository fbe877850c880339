"""PostgreSQL only: the GIN index on the tag ids, and autovacuum settings for the
per-customer tables. (SQLite keeps the tag ids as JSON text and matches tags through
CustomerTag; Django cannot declare an index for one database only.)

- "Has any of these tags" is `tag_ids && ARRAY[...]`, which the GIN index answers.
- Counts read these tables' indexes alone only on pages VACUUM has marked all-visible, and
  every purchase rewrites a row or two: vacuum and analyze them after 2% of their rows
  changed or were inserted instead of the default 20% (a count over a million customers
  went from 35 to 120 ms before the first vacuum).

A migration of its own: on PostgreSQL an index cannot be built in the transaction of 0004,
whose update of every row leaves deferred foreign-key checks pending until its commit.
"""

from django.db import migrations

TABLES = ("customers_customermetrics", "customers_customerproductstats")
AUTOVACUUM = (
    "autovacuum_vacuum_scale_factor",
    "autovacuum_vacuum_insert_scale_factor",
    "autovacuum_analyze_scale_factor",
)


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "CREATE INDEX metrics_tags_gin_idx ON customers_customermetrics USING gin (tag_ids)"
        )
        for table in TABLES:
            settings = ", ".join(f"{name} = 0.02" for name in AUTOVACUUM)
            schema_editor.execute(f"ALTER TABLE {table} SET ({settings})")


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS metrics_tags_gin_idx")
        for table in TABLES:
            schema_editor.execute(f"ALTER TABLE {table} RESET ({', '.join(AUTOVACUUM)})")


class Migration(migrations.Migration):
    dependencies = [
        ("customers", "0004_fill_segment_lean_rows"),
    ]

    operations = [migrations.RunPython(create, drop)]
