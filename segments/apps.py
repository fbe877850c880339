from django.apps import AppConfig


class SegmentsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "segments"

    def ready(self) -> None:
        from customers.signals import customers_changed
        from segments.signals import on_customers_changed

        customers_changed.connect(on_customers_changed, dispatch_uid="segments.customers_changed")
        from segments import checks  # noqa: F401 - registers the rule field checks
