"""Receivers of Django's own signals that the write chain needs: `customer.tags.add()` and
friends write `CustomerTag` rows without `save()`, so the copy of a customer's tag ids on
its metrics row follows through this receiver (connected in `CustomersConfig.ready`)."""

from __future__ import annotations

from typing import Any


def tags_changed(sender: Any, instance: Any, action: str, reverse: bool, **kwargs: Any) -> None:
    """Keep the copy of a customer's tag ids on its metrics row exact after
    `customer.tags.add()/remove()/clear()/set()` (or `tag.customers...` from the tag side)."""
    from customers.services import customer_metrics_refresh

    if action not in ("post_add", "post_remove", "post_clear", "pre_clear"):
        return
    if not reverse:
        if action != "pre_clear":
            customer_metrics_refresh(customer_ids={instance.pk})
        return
    # From the tag's side: `pk_set` names the customers, except for clear, where the
    # customers must be read before the rows go.
    if action == "pre_clear":
        instance._customers_before_clear = list(instance.customers.values_list("pk", flat=True))
    elif action == "post_clear":
        customer_metrics_refresh(customer_ids=getattr(instance, "_customers_before_clear", []))
    else:
        customer_metrics_refresh(customer_ids=kwargs.get("pk_set") or ())
