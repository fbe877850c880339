from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "campaigns"

    def ready(self) -> None:
        # A segment that an offer or content block uses cannot be removed (the segments
        # app's removal plan names them; it does not import this app).
        from campaigns.selectors import segment_users
        from segments.selectors import register_segment_usage

        register_segment_usage(segment_users)

        # Webhooks hear the changes of the apps below, which do not import this one.
        from campaigns.services import webhooks
        from customers.signals import import_completed, score_changes_recorded
        from segments.signals import memberships_changed

        memberships_changed.connect(webhooks.on_memberships_changed, dispatch_uid="webhooks")
        score_changes_recorded.connect(webhooks.on_score_changes, dispatch_uid="webhooks")
        import_completed.connect(webhooks.on_import_completed, dispatch_uid="webhooks")
