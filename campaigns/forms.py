"""Forms of the campaign pages. They clean input; the writes, and the rules that need the
database or the content checker (placeholders, the segments' merchant and state), are
`campaigns.services.campaigns`, whose errors the views put back on these forms' fields
(`CampaignForm.add_service_errors`).

The segment choices are the current merchant's segments only, so another merchant's segment
id is "not one of the available choices".
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.utils import timezone

from campaigns import content
from campaigns.models import Campaign, Channel, ContactRules
from campaigns.services.campaigns import BODY_REQUIRED, SUBJECT_REQUIRED
from customers.models import Merchant
from segments.models import Segment

PLACEHOLDERS = content.PLACEHOLDERS
#: The subject field's label per channel (SMS has none).
SUBJECT_LABELS = {Channel.EMAIL: "Subject", Channel.PUSH: "Title"}
#: The service's error keys that are not a form field, and the field that shows them.
_ERROR_FIELDS = {"segment": "include", "send_at": "send_at"}
LOCAL_FORMAT = "%Y-%m-%dT%H:%M"


class SegmentChoiceField(forms.ModelMultipleChoiceField):
    """Segments by name; an inactive one says so."""

    def label_from_instance(self, obj: Any) -> str:
        return obj.name if obj.is_active else f"{obj.name} (inactive)"


def segment_select(placeholder: str) -> forms.SelectMultiple:
    # A searchable multi-select (Tom Select, static/js/portal.js), as the reports use.
    return forms.SelectMultiple(attrs={"data-searchable": "", "data-placeholder": placeholder})


class CampaignForm(forms.ModelForm):
    """A draft's content, channel, holdout, attribution window and segments: `include`
    (active segments only: an inactive one is not refreshed) and `exclude` (any)."""

    include = SegmentChoiceField(
        queryset=Segment.objects.none(),
        label="Send to",
        help_text="Members of any of these segments. Only active segments can be chosen.",
        widget=segment_select("Pick segments…"),
    )
    exclude = SegmentChoiceField(
        queryset=Segment.objects.none(),
        required=False,
        label="Leave out",
        help_text="Members of any of these get nothing, even when in a segment above.",
        widget=segment_select("Nobody"),
    )

    class Meta:
        model = Campaign
        fields = ["name", "channel", "subject", "body", "holdout_percent", "attribution_days"]
        labels = {
            "body": "Message",
            "holdout_percent": "Holdout (%)",
            "attribution_days": "Attribution window (days)",
        }
        help_texts = {
            "body": "Plain text. Placeholders: see the list beside.",
            "holdout_percent": (
                "0 to 50 % of the eligible customers, drawn at random, get nothing: the "
                "results compare them with the recipients (the lift)."
            ),
            "attribution_days": "Purchases within this many days of the message count (1 to 90).",
        }
        widgets = {
            "body": forms.Textarea(attrs={"rows": 8}),
            "holdout_percent": forms.NumberInput(attrs={"min": 0, "max": 50}),
            "attribution_days": forms.NumberInput(attrs={"min": 1, "max": 90}),
        }

    def __init__(self, *args: Any, merchant: Merchant, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Tenancy: the choices are the current merchant's segments only.
        segments: QuerySet[Segment] = Segment.objects.filter(merchant=merchant).order_by("name")
        include_field = self.fields["include"]
        exclude_field = self.fields["exclude"]
        assert isinstance(include_field, SegmentChoiceField)
        assert isinstance(exclude_field, SegmentChoiceField)
        include_field.queryset = segments.filter(is_active=True)
        exclude_field.queryset = segments
        self.fields["body"].required = True
        self.fields["body"].error_messages["required"] = BODY_REQUIRED
        self.fields["subject"].label = SUBJECT_LABELS.get(Channel(self.channel), "Subject")
        self.fields["subject"].help_text = "The email's subject line or the push's title."
        instance: Campaign = self.instance
        if instance.pk is not None and not self.is_bound:
            links = list(instance.targeting.values_list("segment_id", "exclude"))
            self.initial["include"] = [pk for pk, excluded in links if not excluded]
            self.initial["exclude"] = [pk for pk, excluded in links if excluded]

    @property
    def channel(self) -> str:
        """The channel as submitted (when valid), else the campaign's."""
        value = self.data.get("channel") if self.is_bound else None
        if value in Channel.values:
            return str(value)
        return str(self.initial.get("channel") or self.instance.channel or Channel.EMAIL)

    def clean(self) -> dict[str, Any]:
        """The content's problems, all at once, beside the fields' own: the subject a channel
        needs, unknown placeholders and template code (the service checks them again)."""
        super().clean()
        data = self.cleaned_data
        channel = data.get("channel")
        needs_subject = SUBJECT_REQUIRED.get(Channel(channel)) if channel else None
        if needs_subject and not (data.get("subject") or "").strip():
            self.add_error("subject", needs_subject)
        fields = ("body",) if channel == Channel.SMS else ("subject", "body")
        for name in fields:
            for problem in content.check(data.get(name) or ""):
                self.add_error(name, problem)
        return data

    @property
    def placeholders(self) -> list[tuple[str, str]]:
        return list(PLACEHOLDERS.items())

    def service_kwargs(self) -> dict[str, Any]:
        """The cleaned data as `campaign_save` takes it."""
        data = dict(self.cleaned_data)
        data["include"] = list(data.get("include") or [])
        data["exclude"] = list(data.get("exclude") or [])
        if data.get("channel") == Channel.SMS:
            data["subject"] = ""  # SMS has no subject: a hidden field's leftovers are dropped
        return data

    def add_service_errors(self, error: ValidationError) -> None:
        """Put the service's errors on the fields they name (the rest above the form)."""
        if not hasattr(error, "error_dict"):
            for message in error.messages:
                self.add_error(None, message)
            return
        for key, messages in error.message_dict.items():
            name = _ERROR_FIELDS.get(key, key)
            for message in messages:
                self.add_error(name if name in self.fields else None, message)


class MerchantDateTimeField(forms.DateTimeField):
    """A `datetime-local` value read as the merchant's wall-clock time (not the server's),
    and an aware value shown in it. A time skipped or repeated by a DST change is refused
    with Django's "couldn't be interpreted" message."""

    def __init__(self, *args: Any, tz: dt.tzinfo | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("input_formats", [LOCAL_FORMAT])
        kwargs.setdefault(
            "widget", forms.DateTimeInput(attrs={"type": "datetime-local"}, format=LOCAL_FORMAT)
        )
        super().__init__(*args, **kwargs)
        self.tz = tz

    def to_python(self, value: Any) -> dt.datetime | None:
        with timezone.override(self.tz):
            return super().to_python(value)

    def prepare_value(self, value: Any) -> Any:
        with timezone.override(self.tz):
            return super().prepare_value(value)


class ScheduleForm(forms.Form):
    """When a campaign sends, as the merchant's local time."""

    send_at = MerchantDateTimeField(label="Send at")

    def __init__(self, *args: Any, merchant: Merchant, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["send_at"]
        assert isinstance(field, MerchantDateTimeField)
        field.tz = merchant.tzinfo
        field.help_text = f"Your time ({merchant.time_zone})."


class ContactRulesForm(forms.ModelForm):
    """The merchant's frequency cap and quiet hours (`contact_rules_save` writes them)."""

    class Meta:
        model = ContactRules
        fields = ["cap_messages", "cap_days", "quiet_start", "quiet_end"]
        labels = {
            "cap_messages": "Messages per customer and channel",
            "cap_days": "Within this many days",
            "quiet_start": "Quiet hours start",
            "quiet_end": "Quiet hours end",
        }
        help_texts = {
            "cap_messages": "At most this many; 0: no cap (up to 100).",
            "cap_days": "1 to 90 days, counted back from the send.",
            "quiet_start": "Your local time.",
            "quiet_end": "The same time as the start: no quiet hours.",
        }
        widgets = {
            "cap_messages": forms.NumberInput(attrs={"min": 0, "max": 100}),
            "cap_days": forms.NumberInput(attrs={"min": 1, "max": 90}),
            "quiet_start": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
            "quiet_end": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
        }
