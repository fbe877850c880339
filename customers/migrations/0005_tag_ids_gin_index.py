"""The GIN index on the tag ids, on PostgreSQL only: "has any of these tags" is
`tag_ids && ARRAY[...]`, which this index answers. (SQLite keeps the ids as JSON text and
matches tags through CustomerTag; Django cannot declare an index for one database only.)

A migration of its own: on PostgreSQL an index cannot be built in the transaction of 0004,
whose update of every row leaves deferred foreign-key checks pending until its commit.
"""

from django.db import migrations


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "CREATE INDEX metrics_tags_gin_idx ON customers_customermetrics USING gin (tag_ids)"
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS metrics_tags_gin_idx")


class Migration(migrations.Migration):
    dependencies = [
        ("customers", "0004_fill_segment_lean_rows"),
    ]

    operations = [migrations.RunPython(create, drop)]
