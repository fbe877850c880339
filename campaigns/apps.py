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
