from __future__ import annotations

from django.apps import AppConfig


class CustomersConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "customers"

    def ready(self) -> None:
        from django.db.models.signals import m2m_changed

        from customers import lookups
        from customers.models import Customer
        from customers.receivers import tags_changed

        lookups.register()
        m2m_changed.connect(
            tags_changed, sender=Customer.tags.through, dispatch_uid="customers.tags_changed"
        )
