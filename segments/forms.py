"""Forms of the segment pages. They clean input; the writes are `segments.services`."""

from __future__ import annotations

from django import forms

from segments.models import REFRESH_HOURS, RefreshCadence, Segment, Weekday

WEEKDAYS = Weekday.choices


class SegmentSettingsForm(forms.Form):
    """Name, slug, description, state and refresh schedule of a segment (not its rules)."""

    name = forms.CharField(max_length=200)
    slug = forms.SlugField(
        max_length=100, required=False, help_text="Leave empty to derive it from the name."
    )
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)
    is_active = forms.BooleanField(required=False, initial=True, label="Active")
    refresh_cadence = forms.ChoiceField(
        choices=RefreshCadence.choices, initial=RefreshCadence.DAILY, label="Refresh"
    )
    refresh_weekday = forms.TypedChoiceField(
        choices=WEEKDAYS,
        coerce=int,
        initial=6,
        required=False,
        label="Weekday",
        help_text="For a weekly refresh.",
    )
    refresh_hour = forms.TypedChoiceField(
        choices=REFRESH_HOURS, coerce=int, initial=3, label="Hour"
    )

    def clean_refresh_weekday(self) -> int:
        # Shown (and needed) only for a weekly refresh; otherwise Sunday is kept.
        value = self.cleaned_data.get("refresh_weekday")
        return 6 if value is None or value == "" else int(value)

    @classmethod
    def initial_for(cls, segment: Segment) -> dict[str, object]:
        return {
            "name": segment.name,
            "slug": segment.slug,
            "description": segment.description,
            "is_active": segment.is_active,
            "refresh_cadence": segment.refresh_cadence,
            "refresh_weekday": segment.refresh_weekday,
            "refresh_hour": segment.refresh_hour,
        }


class ManualSettingsForm(forms.Form):
    """What a manual segment has besides its members: name, description, state."""

    name = forms.CharField(max_length=200)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)
    is_active = forms.BooleanField(required=False, label="Active")


class MemberUploadForm(forms.Form):
    file = forms.FileField(label="CSV file (header: external_id)")
