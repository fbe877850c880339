"""Forms of the offer and content pages. They clean input; the writes (and the rules that
need the database: unique names, the targeting's merchant and state) are
`campaigns.services`, whose errors the views put back on these forms' fields.

The segment choices are the current merchant's segments only, so another merchant's segment
id is "not one of the available choices".
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.db.models import QuerySet

from campaigns.forms import SegmentChoiceField, segment_select
from campaigns.models import ContentBlock, Offer, Targeted
from campaigns.services.offers import (
    CODE_LENGTH_LEAST,
    CODE_LENGTH_MOST,
    CODES_AT_MOST,
    DATES_REVERSED,
    PREFIX_MOST,
)
from customers.models import Merchant
from segments.models import Segment

UPLOAD_NOTHING = "Paste codes or choose a file."
UPLOAD_BOTH = "Paste codes or choose a file, not both."
#: 100,000 codes of 64 characters and their line ends, with room for a CSV's other columns.
UPLOAD_MAX_BYTES = 16 * 1024 * 1024
UPLOAD_TOO_BIG = "The file is larger than 16 MB: upload at most 100,000 codes at a time."


def _date_input() -> forms.DateInput:
    return forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")


class TargetedForm(forms.ModelForm):
    """What offers and content blocks share: validity, the active switch, and the segments
    aimed at (`include`, active ones only) and kept from (`exclude`, any)."""

    # Not required here: the service says "choose at least one" with its other refusals
    # (a taken name, a missing shared code), so one save shows every problem.
    include = SegmentChoiceField(
        queryset=Segment.objects.none(),
        required=False,
        label="Aimed at",
        help_text=(
            "At least one. Members of any of these segments see it. Only active segments can "
            "be chosen: an inactive segment is not refreshed, so its members would be out of "
            "date."
        ),
        widget=segment_select("Pick segments…"),
    )
    exclude = SegmentChoiceField(
        queryset=Segment.objects.none(),
        required=False,
        label="Kept from",
        help_text=(
            "Members of any of these never see it, even when they are in a segment it is "
            "aimed at. Inactive segments may be chosen here."
        ),
        widget=segment_select("Nobody"),
    )

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
        instance: Targeted = self.instance
        if instance.pk is not None and not self.is_bound:
            links = list(instance.targeting.values_list("segment_id", "exclude"))  # type: ignore[attr-defined]
            self.initial["include"] = [pk for pk, excluded in links if not excluded]
            self.initial["exclude"] = [pk for pk, excluded in links if excluded]

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        first, last = data.get("valid_from"), data.get("valid_until")
        if first and last and last < first:
            # Said here, before the model's own check constraint gives its generic message.
            self.add_error("valid_until", DATES_REVERSED.format(first=f"{first:%Y-%m-%d}"))
        return data

    def service_kwargs(self) -> dict[str, Any]:
        """The cleaned data as the save service takes it."""
        data = dict(self.cleaned_data)
        data["include"] = list(data.get("include") or [])
        data["exclude"] = list(data.get("exclude") or [])
        return data


_DATE_LABELS = {"valid_from": "First day", "valid_until": "Last day", "is_active": "Active"}
_DATE_HELP = {
    "valid_from": "Empty: from today. Days are the merchant's, both included.",
    "valid_until": "Empty: until you switch it off.",
}


class OfferForm(TargetedForm):
    class Meta:
        model = Offer
        fields = [
            "name",
            "description",
            "kind",
            "code_mode",
            "shared_code",
            "valid_from",
            "valid_until",
            "is_active",
        ]
        labels = {**_DATE_LABELS, "code_mode": "Code", "shared_code": "Shared code"}
        help_texts = {
            **_DATE_HELP,
            "code_mode": (
                "A pool of unique codes is filled on the offer's page once it is saved "
                "(generate codes or upload a list); each customer gets one code of it."
            ),
            "shared_code": "The code every customer who sees the offer gets, e.g. SPRING26.",
        }
        widgets = {
            "description": forms.Textarea(attrs={"rows": 2}),
            "valid_from": _date_input(),
            "valid_until": _date_input(),
        }


class ContentBlockForm(TargetedForm):
    image_url = forms.URLField(
        max_length=500,
        required=False,
        assume_scheme="https",
        label="Image URL",
        help_text="The address of an image your app or site shows with the block.",
    )
    link = forms.URLField(
        max_length=500,
        required=False,
        assume_scheme="https",
        help_text="Where the block leads when tapped or clicked.",
    )

    class Meta:
        model = ContentBlock
        fields = ["title", "body", "image_url", "link", "valid_from", "valid_until", "is_active"]
        labels = _DATE_LABELS
        help_texts = _DATE_HELP
        widgets = {
            "body": forms.Textarea(attrs={"rows": 4}),
            "valid_from": _date_input(),
            "valid_until": _date_input(),
        }


class CodeGenerateForm(forms.Form):
    count = forms.IntegerField(min_value=1, max_value=CODES_AT_MOST, initial=100, label="How many")
    # Not `prefix`: a form's prefix is the one of its field names.
    code_prefix = forms.CharField(
        max_length=PREFIX_MOST,
        required=False,
        label="Prefix",
        help_text="Optional, e.g. BDAY-.",
    )
    length = forms.IntegerField(
        min_value=CODE_LENGTH_LEAST,
        max_value=CODE_LENGTH_MOST,
        initial=8,
        label="Characters",
        help_text="Besides the prefix.",
    )


class CodeUploadForm(forms.Form):
    codes = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4, "class": "font-monospace"}),
        required=False,
        label="Codes",
        help_text="One code per line (a long list, as a file).",
    )
    file = forms.FileField(
        required=False,
        label="Or a file",
        help_text="Text or CSV (UTF-8): one code per line, or codes in the first column.",
    )

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        pasted, file = (data.get("codes") or "").strip(), data.get("file")
        if pasted and file:
            raise forms.ValidationError(UPLOAD_BOTH)
        if not pasted and not file:
            raise forms.ValidationError(UPLOAD_NOTHING)
        if file and file.size > UPLOAD_MAX_BYTES:
            # Refused before it is read: the service reads the whole file.
            raise forms.ValidationError(UPLOAD_TOO_BIG)
        data["text_or_file"] = file or pasted
        return data
