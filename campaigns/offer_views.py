"""Portal pages that create and edit offers and content blocks, fill an offer's pool of
unique codes, and switch offers and blocks on and off (under /campaigns/offers/).

Thin: reads come from `campaigns.selectors`, writes from `campaigns.services`, whose
ValidationErrors go back on the form's fields (a refused write saves nothing). Reading an
offer's page needs `VIEW`; the forms and every POST need `MANAGE_OFFERS`.

Tenancy: every offer, block and segment is looked up among the current merchant's rows
(`selectors.offer_queryset` / `content_queryset`, the forms' segment choices), so another
merchant's ids answer 404 (or are not a valid choice).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views import View

from campaigns import selectors, services
from campaigns.models import CodeMode, ContentBlock, Offer
from campaigns.offer_forms import (
    CodeGenerateForm,
    CodeUploadForm,
    ContentBlockForm,
    OfferForm,
    TargetedForm,
)
from customers.portal.formatting import format_count
from customers.portal.permissions import Action
from customers.portal.tenancy import MerchantRequiredMixin, current_merchant
from segments.models import Segment

OFFER_SAVED = 'Offer "{name}" saved.'
CONTENT_SAVED = 'Content block "{title}" saved.'
SWITCHED_ON = '"{name}" is on: the members of its segments see it while it is valid.'
SWITCHED_OFF = '"{name}" is off: nobody sees it until it is switched on again.'
CODES_GENERATED = "{codes} added to the pool."
CODES_UPLOADED = "{codes} added to the pool."
CODES_SKIPPED = "Skipped {codes} the pool had already: {listed}."
CODES_REPEATED = "Dropped {lines} repeating a code listed above."
#: Skipped codes named in the message; the rest are counted.
SKIPPED_NAMED = 10


def _counted(count: int, noun: str) -> str:
    """ "1 code", "2,000 codes"."""
    return f"{format_count(count)} {noun}{'' if count == 1 else 's'}"


def _offer(request: HttpRequest, pk: int) -> Offer:
    return get_object_or_404(selectors.offer_queryset(merchant=current_merchant(request)), pk=pk)


def _block(request: HttpRequest, pk: int) -> ContentBlock:
    return get_object_or_404(selectors.content_queryset(merchant=current_merchant(request)), pk=pk)


def _errors_onto(
    form: forms.BaseForm, exc: ValidationError, renamed: dict[str, str] | None = None
) -> None:
    """A service's refusal, each message on its field (`renamed`: the form's name of a
    service's argument), or on the form."""
    if hasattr(exc, "error_dict"):
        for name, errors in exc.message_dict.items():
            field = (renamed or {}).get(name, name)
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, exc.messages)


def _inactive_included(item: Offer | ContentBlock | None) -> list[Segment]:
    """Segments the saved item is aimed at that are inactive now: not offered as choices,
    so saving the form drops them (the page says so)."""
    if item is None or item.pk is None:
        return []
    return [
        link.segment
        for link in item.targeting.filter(exclude=False, segment__is_active=False)
        .select_related("segment")
        .order_by("segment__name")
    ]


class _TargetedFormView(MerchantRequiredMixin, View):
    """Create (no pk) or edit (pk) an offer or a content block."""

    permission = Action.MANAGE_OFFERS
    form_class: type[TargetedForm]
    template_name: str

    def item(self, request: HttpRequest, pk: int | None) -> Offer | ContentBlock | None:
        raise NotImplementedError

    def save(
        self, request: HttpRequest, form: TargetedForm, item: Any
    ) -> tuple[Offer | ContentBlock, str]:
        raise NotImplementedError

    def get(self, request: HttpRequest, pk: int | None = None) -> HttpResponse:
        item = self.item(request, pk)
        form = self.form_class(instance=item, merchant=current_merchant(request))
        return self._render(request, form, item)

    def post(self, request: HttpRequest, pk: int | None = None) -> HttpResponse:
        item = self.item(request, pk)
        # The form works on its own copy: the service reads the saved row itself.
        copy = type(item)._default_manager.get(pk=item.pk) if item is not None else None
        form = self.form_class(request.POST, instance=copy, merchant=current_merchant(request))
        if form.is_valid():
            try:
                saved, message = self.save(request, form, item)
            except ValidationError as exc:
                _errors_onto(form, exc)
            except services.OfferError as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, message)
                return self.success(saved)
        return self._render(request, form, item, status=400)

    def success(self, saved: Any) -> HttpResponse:
        raise NotImplementedError

    def _render(
        self, request: HttpRequest, form: TargetedForm, item: Any, status: int = 200
    ) -> HttpResponse:
        context = {"form": form, "item": item, "inactive_included": _inactive_included(item)}
        return render(request, self.template_name, context, status=status)


class OfferFormView(_TargetedFormView):
    """/campaigns/offers/new/ and /campaigns/offers/<pk>/edit/."""

    form_class = OfferForm
    template_name = "campaigns/offer_form.html"

    def item(self, request: HttpRequest, pk: int | None) -> Offer | None:
        return _offer(request, pk) if pk is not None else None

    def save(self, request: HttpRequest, form: TargetedForm, item: Any) -> tuple[Offer, str]:
        offer = services.offer_save(
            merchant=current_merchant(request),
            offer=item,
            user=request.user,
            **form.service_kwargs(),
        )
        return offer, OFFER_SAVED.format(name=offer.name)

    def success(self, saved: Any) -> HttpResponse:
        return redirect("campaigns:offer_detail", pk=saved.pk)


class ContentFormView(_TargetedFormView):
    """/campaigns/offers/content/new/ and /campaigns/offers/content/<pk>/edit/."""

    form_class = ContentBlockForm
    template_name = "campaigns/content_form.html"

    def item(self, request: HttpRequest, pk: int | None) -> ContentBlock | None:
        return _block(request, pk) if pk is not None else None

    def save(self, request: HttpRequest, form: TargetedForm, item: Any) -> tuple[ContentBlock, str]:
        block = services.content_block_save(
            merchant=current_merchant(request),
            block=item,
            user=request.user,
            **form.service_kwargs(),
        )
        return block, CONTENT_SAVED.format(title=block.title)

    def success(self, saved: Any) -> HttpResponse:
        return redirect("campaigns:offers")


class OfferDetailView(MerchantRequiredMixin, View):
    """An offer: its targeting, whether it runs today, codes given and free, redemptions,
    its latest 50 codes with their holders, and (for those who manage offers, when it has
    a pool of unique codes) the forms that generate and upload codes."""

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        return offer_page(request, _offer(request, pk))


def offer_page(
    request: HttpRequest,
    offer: Offer,
    *,
    generate: CodeGenerateForm | None = None,
    upload: CodeUploadForm | None = None,
    status: int = 200,
) -> HttpResponse:
    """The offer's page, with the code forms as posted when one was refused."""
    merchant = current_merchant(request)
    today = merchant.today()
    return render(
        request,
        "campaigns/offer_detail.html",
        {
            "offer": offer,
            "detail": selectors.offer_detail(offer=offer, today=today),
            "today": today,
            "unique": offer.code_mode == CodeMode.UNIQUE,
            "generate_form": generate or CodeGenerateForm(),
            "upload_form": upload or CodeUploadForm(),
        },
        status=status,
    )


class OfferCodesGenerateView(MerchantRequiredMixin, View):
    permission = Action.MANAGE_OFFERS

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        offer = _offer(request, pk)
        form = CodeGenerateForm(request.POST)
        if form.is_valid():
            try:
                codes = services.offer_codes_generate(
                    offer=offer,
                    count=form.cleaned_data["count"],
                    prefix=form.cleaned_data["code_prefix"],
                    length=form.cleaned_data["length"],
                )
            except ValidationError as exc:
                _errors_onto(form, exc, renamed={"prefix": "code_prefix"})
            except services.OfferError as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(
                    request, CODES_GENERATED.format(codes=_counted(len(codes), "new code"))
                )
                return redirect("campaigns:offer_detail", pk=offer.pk)
        return offer_page(request, offer, generate=form, status=400)


class OfferCodesUploadView(MerchantRequiredMixin, View):
    permission = Action.MANAGE_OFFERS

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        offer = _offer(request, pk)
        form = CodeUploadForm(request.POST, request.FILES)
        if form.is_valid():
            try:
                done = services.offer_codes_upload(
                    offer=offer, text_or_file=form.cleaned_data["text_or_file"]
                )
            except ValidationError as exc:
                _errors_onto(form, exc)
            except services.OfferError as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, CODES_UPLOADED.format(codes=_counted(done.added, "code")))
                if done.skipped:
                    named = ", ".join(done.skipped[:SKIPPED_NAMED])
                    more = len(done.skipped) - SKIPPED_NAMED
                    listed = f"{named} and {format_count(more)} more" if more > 0 else named
                    messages.info(
                        request,
                        CODES_SKIPPED.format(
                            codes=_counted(len(done.skipped), "code"), listed=listed
                        ),
                    )
                if done.repeated:
                    messages.info(
                        request, CODES_REPEATED.format(lines=_counted(done.repeated, "line"))
                    )
                return redirect("campaigns:offer_detail", pk=offer.pk)
        return offer_page(request, offer, upload=form, status=400)


def _switch_message(name: str, active: bool) -> str:
    return (SWITCHED_ON if active else SWITCHED_OFF).format(name=name)


def _wanted_state(request: HttpRequest, current: bool) -> bool:
    """The state the button asked for (`active` 1 or 0: a second click from a page that was
    not reloaded changes nothing), else the other one."""
    asked = request.POST.get("active")
    return asked == "1" if asked in ("0", "1") else not current


class OfferToggleView(MerchantRequiredMixin, View):
    """Switch an offer on or off (POST)."""

    permission = Action.MANAGE_OFFERS

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        offer = _offer(request, pk)
        services.offer_set_active(offer=offer, active=_wanted_state(request, offer.is_active))
        messages.success(request, _switch_message(offer.name, offer.is_active))
        return redirect("campaigns:offer_detail", pk=offer.pk)


class ContentToggleView(MerchantRequiredMixin, View):
    """Switch a content block on or off (POST)."""

    permission = Action.MANAGE_OFFERS

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        block = _block(request, pk)
        services.content_block_set_active(
            block=block, active=_wanted_state(request, block.is_active)
        )
        messages.success(request, _switch_message(block.title, block.is_active))
        return redirect("campaigns:content_edit", pk=block.pk)
