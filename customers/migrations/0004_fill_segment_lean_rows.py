"""Fill the columns and the table that 0003 added, for the rows that already exist, and add
the PostgreSQL GIN index on the tag ids.

Self-contained SQL on purpose: `customers.metrics` follows the current models, which later
migrations may change; this one must keep working on the schema as of 0003.
"""

from django.db import migrations

PROFILE = (
    "gender",
    "customer_type",
    "tier_id",
    "home_branch_id",
    "birth_date",
    "joined_at",
    "email_opt_in",
    "sms_opt_in",
    "push_opt_in",
    "points_balance",
    "lifetime_points",
    "last_contacted_at",
)


def fill(apps, schema_editor):
    postgres = schema_editor.connection.vendor == "postgresql"
    if postgres:
        tag_ids = (
            "ARRAY(SELECT ct.tag_id FROM customers_customertag ct "
            "WHERE ct.customer_id = c.id ORDER BY ct.tag_id)::bigint[]"
        )
    else:
        tag_ids = (
            "(SELECT json_group_array(tag_id) FROM (SELECT ct.tag_id FROM "
            "customers_customertag ct WHERE ct.customer_id = c.id ORDER BY ct.tag_id))"
        )
    copies = ", ".join(f"{column} = c.{column}" for column in PROFILE)
    schema_editor.execute(
        f"UPDATE customers_customermetrics SET {copies}, tag_ids = {tag_ids} "
        "FROM customers_customer c WHERE c.id = customers_customermetrics.customer_id"
    )
    schema_editor.execute(
        "INSERT INTO customers_customerproductstats "
        "(customer_id, product_id, units, last_purchased_at) "
        "SELECT t.customer_id, li.product_id, SUM(li.quantity), MAX(t.occurred_at) "
        "FROM customers_lineitem li JOIN customers_transaction t ON t.id = li.transaction_id "
        "WHERE t.kind = 'purchase' GROUP BY t.customer_id, li.product_id"
    )
    if postgres:
        schema_editor.execute(
            "CREATE INDEX metrics_tags_gin_idx ON customers_customermetrics "
            "USING gin (tag_ids)"
        )


def unfill(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS metrics_tags_gin_idx")


class Migration(migrations.Migration):
    dependencies = [
        ("customers", "0003_segment_lean_rows"),
    ]

    operations = [migrations.RunPython(fill, unfill)]
