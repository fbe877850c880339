from __future__ import annotations

from typing import Any

from django.apps import AppConfig


def _tags_changed(sender: Any, instance: Any, action: str, reverse: bool, **kwargs: Any) -> None:
    """Keep the copy of a customer's tag ids on its metrics row exact after
    `customer.tags.add()/remove()/clear()/set()` (or `tag.customers...` from the tag side)."""
    from customers.metrics import refresh_metrics

    if action not in ("post_add", "post_remove", "post_clear", "pre_clear"):
        return
    if not reverse:
        if action != "pre_clear":
            refresh_metrics({instance.pk})
        return
    # From the tag's side: `pk_set` names the customers, except for clear, where the
    # customers must be read before the rows go.
    if action == "pre_clear":
        instance._customers_before_clear = list(instance.customers.values_list("pk", flat=True))
    elif action == "post_clear":
        refresh_metrics(getattr(instance, "_customers_before_clear", []))
    else:
        refresh_metrics(kwargs.get("pk_set") or ())


class CustomersConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "customers"

    def ready(self) -> None:
        from django.db.models.signals import m2m_changed

        from customers.models import Customer

        m2m_changed.connect(
            _tags_changed, sender=Customer.tags.through, dispatch_uid="customers.tags_changed"
        )
