"""The owners' webhook endpoint form: the address, a description, the events as checkboxes.

The form types the values and checks the address with the services' own check
(`campaigns.webhooks.check_url`: http(s), found, not on a private network), so every error
shows at once; `endpoint_create` / `endpoint_update` check again when saving, and their
ValidationError is put back on the field it names (`add_service_errors`).
"""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from campaigns.models import WebhookEndpoint, WebhookEvent
from campaigns.services.webhooks import MSG_NO_EVENTS
from campaigns.webhooks import AddressRefused, check_url


class WebhookEndpointForm(forms.Form):
    url = forms.URLField(
        label="Address (URL)",
        max_length=500,
        assume_scheme="https",
        help_text="Where the events are posted, e.g. https://example.com/hooks/segment-portal. "
        "It must be reachable from the internet.",
        widget=forms.URLInput(attrs={"placeholder": "https://", "autocomplete": "off"}),
    )
    description = forms.CharField(
        label="Description",
        max_length=200,
        required=False,
        help_text="What listens there, e.g. the loyalty app or the CRM sync.",
    )
    events = forms.MultipleChoiceField(
        label="Events",
        choices=WebhookEvent.choices,
        widget=forms.CheckboxSelectMultiple(attrs={"class": "form-check-input"}),
        error_messages={"required": MSG_NO_EVENTS},
        help_text="The events sent to this address.",
    )

    def clean_url(self) -> str:
        # Checked here too (the services check again when saving), so a refused address is
        # shown under its field even when another field is wrong as well.
        url: str = self.cleaned_data["url"]
        try:
            check_url(url)
        except AddressRefused as error:
            raise ValidationError(str(error), code="refused") from error
        return url

    @classmethod
    def for_endpoint(cls, endpoint: WebhookEndpoint) -> WebhookEndpointForm:
        return cls(
            initial={
                "url": endpoint.url,
                "description": endpoint.description,
                "events": list(endpoint.events),
            }
        )

    def add_service_errors(self, error: ValidationError) -> None:
        """Show a service's ValidationError under the field it names (else above the form)."""
        for field, messages in error.message_dict.items():
            target = field if field in self.fields else None
            for message in messages:
                self.add_error(target, message)
