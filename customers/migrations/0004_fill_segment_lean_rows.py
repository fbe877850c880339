"""Fill the columns and the table that 0003 added, for the rows that already exist.

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
        "(customer_id, product_id, merchant_id, units, last_purchased_at) "
        "SELECT t.customer_id, li.product_id, MIN(t.merchant_id), SUM(li.quantity), "
        "MAX(t.occurred_at) "
        "FROM customers_lineitem li JOIN customers_transaction t ON t.id = li.transaction_id "
        "WHERE t.kind = 'purchase' GROUP BY t.customer_id, li.product_id"
    )


class Migration(migrations.Migration):
    dependencies = [
        ("customers", "0003_segment_lean_rows"),
    ]

    operations = [migrations.RunPython(fill, migrations.RunPython.noop)]
