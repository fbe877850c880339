"""Portal pages of the campaigns app: the campaigns (list, form, page, and its audience,
progress, results and deliveries; send, schedule, unschedule, test, duplicate, remove), the
merchant's contact rules, the offers list, and the customer page's "Offers and content" part.

Thin: reads come from `campaigns.selectors`, `campaigns.audience` and `campaigns.results`,
writes from `campaigns.services`. Tenancy: a campaign is looked up among the current
merchant's campaigns (`_campaign`), a customer among its customers, so another merchant's
ids answer 404.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views import View

from campaigns import audience, content, selectors
from campaigns.channels import channel_status
from campaigns.filters import CampaignFilter, DeliveryFilter
from campaigns.forms import SUBJECT_LABELS, CampaignForm, ContactRulesForm, ScheduleForm
from campaigns.models import (
    Campaign,
    CampaignSegment,
    CampaignStatus,
    Channel,
    CodeMode,
    CouponCode,
    Delivery,
    SkipReason,
)
from campaigns.results import CampaignResults, campaign_results
from campaigns.services.campaigns import (
    campaign_delete,
    campaign_duplicate,
    campaign_save,
    campaign_schedule,
    campaign_test_send,
    campaign_unschedule,
    contact_rules_save,
)
from campaigns.services.sending import SendError, campaign_start
from campaigns.tables import CampaignTable, DeliveryTable
from customers.models import Customer, Merchant
from customers.portal.formatting import format_count, format_money
from customers.portal.lists import MerchantTableListView
from customers.portal.permissions import Action
from customers.portal.tenancy import MerchantRequiredMixin, current_merchant


class CustomerVisibleView(MerchantRequiredMixin, View):
    """Partial (loaded by the customer page): the offers and content blocks the customer
    sees now, each with the segment that decided, and the customer's code of an offer with
    a pool of unique codes when they hold one."""

    def get(self, request: HttpRequest, customer_pk: int) -> HttpResponse:
        merchant = current_merchant(request)
        customer = get_object_or_404(Customer.objects.filter(merchant=merchant), pk=customer_pk)
        today = merchant.today()
        offers = list(selectors.visible_offers(customer=customer, today=today))
        held = dict(
            CouponCode.objects.filter(
                customer=customer, offer_id__in=[o.pk for o in offers]
            ).values_list("offer_id", "code")
        )
        return render(
            request,
            "campaigns/partials/customer_visible.html",
            {
                "customer": customer,
                "offers": [
                    (offer, held.get(offer.pk) if offer.code_mode == CodeMode.UNIQUE else None)
                    for offer in offers
                ],
                "blocks": list(selectors.visible_content(customer=customer, today=today)),
                "today": today,
            },
        )


class OfferListView(MerchantRequiredMixin, View):
    """The merchant's offers and content blocks: who they are aimed at, whether they run
    today, codes given and left, and redemptions of each offer."""

    def get(self, request: HttpRequest) -> HttpResponse:
        merchant = current_merchant(request)
        today = merchant.today()
        return render(
            request,
            "campaigns/offer_list.html",
            {
                "offers": selectors.offer_list(merchant=merchant, today=today),
                "blocks": selectors.content_list(merchant=merchant, today=today),
                "today": today,
            },
        )


# -- campaigns ------------------------------------------------------------------------------

SAVED = 'Campaign "{name}" saved.'
NOT_EDITABLE = '"{name}" has been {status}: it cannot be changed. Duplicate it to send it again.'
NOT_REMOVABLE = '"{name}" has been {status}: it is kept with its results and cannot be removed.'
REMOVED = 'Campaign "{name}" removed.'
SENDING = 'Sending "{name}": {left} messages to go, {skipped} customers skipped.'
SENT = '"{name}" sent: {sent} sent, {failed} failed, {skipped} skipped.'
ALREADY_STARTED = '"{name}" had already started sending: nothing more was done.'
SCHEDULED = '"{name}" will be sent on {when} ({zone}).'
UNSCHEDULED = '"{name}" is no longer scheduled: it is a draft again.'
TEST_SENT = "Test sent to {to}."
TEST_SENT_AS_EMAIL = (
    "Test sent to {to} (an email showing the {channel}: you have no phone or app here)."
)
DUPLICATED = 'Created "{name}", a draft with the same content and segments: check it and save.'
RULES_SAVED = "Contact rules saved: they apply to every campaign sent from now on."
BAD_DAYS = "The window is 1 to 90 days: showing the campaign's {days} days."
#: The results page's window choices (the campaign's own is added when it is not one).
WINDOWS = (7, 14, 30)
CHART_COLORS = {"recipients": "#0d6efd", "holdout": "#6c757d"}


def _campaign(request: HttpRequest, pk: int) -> Campaign:
    """The current merchant's campaign `pk`: another merchant's answers 404."""
    campaigns = selectors.campaign_queryset(merchant=current_merchant(request))
    return get_object_or_404(campaigns.select_related("merchant"), pk=pk)


def _status_text(campaign: Campaign) -> str:
    return str(campaign.get_status_display()).lower()


def _detail(campaign: Campaign) -> HttpResponse:
    return redirect("campaigns:detail", pk=campaign.pk)


def _error_messages(request: HttpRequest, error: ValidationError) -> None:
    for message in error.messages:
        messages.error(request, message)


class CampaignListView(MerchantTableListView):
    """The merchant's campaigns, newest first: name, channel, status, segments, when sent
    or scheduled, and the deliveries by status; search, filters, sorting, export."""

    template_name = "campaigns/campaign_list.html"
    partial_template_name = "campaigns/partials/campaign_table.html"
    filterset_class = CampaignFilter
    table_class = CampaignTable
    export_name = "campaigns"
    dataset_kwargs = {"title": "Campaigns"}

    def get_queryset(self) -> QuerySet[Campaign]:
        return selectors.campaign_list(current_merchant(self.request))

    def get_table_kwargs(self) -> dict[str, Any]:
        return {"merchant": current_merchant(self.request)}


class CampaignFormView(MerchantRequiredMixin, View):
    """New draft (no pk) or edit a draft or scheduled campaign. A started campaign cannot be
    changed: its edit page leads back to its page with a message."""

    permission = Action.DRAFT_CAMPAIGNS

    def _render(
        self, request: HttpRequest, form: CampaignForm, campaign: Campaign | None
    ) -> HttpResponse:
        return render(
            request,
            "campaigns/campaign_form.html",
            {
                "form": form,
                "campaign": campaign,
                "subject_labels_json": json.dumps({str(k): v for k, v in SUBJECT_LABELS.items()}),
            },
            status=400 if form.is_bound and form.errors else 200,
        )

    def _locked(self, request: HttpRequest, campaign: Campaign | None) -> HttpResponse | None:
        if campaign is None or campaign.is_editable:
            return None
        messages.warning(
            request, NOT_EDITABLE.format(name=campaign.name, status=_status_text(campaign))
        )
        return _detail(campaign)

    def get(self, request: HttpRequest, pk: int | None = None) -> HttpResponse:
        merchant = current_merchant(request)
        campaign = _campaign(request, pk) if pk is not None else None
        if locked := self._locked(request, campaign):
            return locked
        form = CampaignForm(instance=campaign or Campaign(merchant=merchant), merchant=merchant)
        return self._render(request, form, campaign)

    def post(self, request: HttpRequest, pk: int | None = None) -> HttpResponse:
        merchant = current_merchant(request)
        campaign = _campaign(request, pk) if pk is not None else None
        if locked := self._locked(request, campaign):
            return locked
        form = CampaignForm(
            request.POST, instance=campaign or Campaign(merchant=merchant), merchant=merchant
        )
        if form.is_valid():
            try:
                saved = campaign_save(
                    merchant=merchant, campaign=campaign, user=request.user, **form.service_kwargs()
                )
            except ValidationError as error:
                form.add_service_errors(error)
            else:
                messages.success(request, SAVED.format(name=saved.name))
                return _detail(saved)
        return self._render(request, form, campaign)


def _targeting(campaign: Campaign) -> tuple[list[CampaignSegment], list[CampaignSegment]]:
    links = list(
        CampaignSegment.objects.filter(campaign=campaign)
        .select_related("segment")
        .order_by("segment__name")
    )
    return [link for link in links if not link.exclude], [link for link in links if link.exclude]


def _next_hour(merchant: Merchant) -> dt.datetime:
    local = timezone.localtime(timezone.now(), merchant.tzinfo)
    return local.replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)


def _windows(campaign: Campaign) -> list[int]:
    return sorted({*WINDOWS, campaign.attribution_days})


class CampaignDetailView(MerchantRequiredMixin, View):
    """A campaign: its content as its first member gets it, its segments, the channel's
    backend, and by status: the audience and the actions (draft, scheduled), the progress
    (sending), or the progress and the results (sent)."""

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        campaign = _campaign(request, pk)
        merchant = campaign.merchant
        included, excluded = _targeting(campaign)
        preview = selectors.campaign_preview(campaign)
        started = campaign.status in (CampaignStatus.SENDING, CampaignStatus.SENT)
        return render(
            request,
            "campaigns/campaign_detail.html",
            {
                "campaign": campaign,
                "preview": preview,
                "sms_length": (
                    content.sms_length(preview.body).text
                    if campaign.channel == Channel.SMS and not preview.error
                    else ""
                ),
                "subject_label": SUBJECT_LABELS.get(Channel(campaign.channel), ""),
                "included": included,
                "excluded": excluded,
                "backend": channel_status().get(campaign.channel, ""),
                "progress": selectors.campaign_progress(campaign) if started else None,
                "schedule_form": ScheduleForm(
                    merchant=merchant, initial={"send_at": campaign.send_at or _next_hour(merchant)}
                ),
                "windows": _windows(campaign),
            },
        )


class CampaignAudienceView(MerchantRequiredMixin, View):
    """Partial (loaded by the campaign page): who a send would reach now: members, eligible,
    each skip reason with its count, the wait for quiet hours, stale segments; with the
    send confirmation for roles that may send."""

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        campaign = _campaign(request, pk)
        return render(
            request,
            "campaigns/partials/campaign_audience.html",
            {
                "campaign": campaign,
                "preview": audience.preview(campaign) if campaign.is_editable else None,
            },
        )


class CampaignProgressView(MerchantRequiredMixin, View):
    """Partial: how far the send is. The page polls it every 2 s while sending; once the
    send is over, a poll (`?poll=1`) reloads the whole page, which then shows the results."""

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        campaign = _campaign(request, pk)
        response = render(
            request,
            "campaigns/partials/campaign_progress.html",
            {"campaign": campaign, "progress": selectors.campaign_progress(campaign)},
        )
        if request.GET.get("poll") and campaign.status != CampaignStatus.SENDING:
            response["HX-Refresh"] = "true"
        return response


def _days(value: str | None) -> int | None:
    """`?days=`: an integer of 1 to 90, else None."""
    if value is None or not value.isascii() or not value.isdigit():
        return None
    days = int(value)
    return days if 1 <= days <= 90 else None


def results_chart(results: CampaignResults) -> dict[str, Any]:
    """The cumulative conversion chart for `static/js/report-charts.js` (its JSON goes in
    the canvas's data-chart attribute: htmx drops script elements)."""
    data = {
        "type": "line",
        "labels": [f"Day {day.day}" for day in results.chart],
        "datasets": [
            {
                "label": "Recipients",
                "data": [day.recipients for day in results.chart],
                "color": CHART_COLORS["recipients"],
            },
            {
                "label": "Holdout",
                "data": [day.holdout for day in results.chart],
                "color": CHART_COLORS["holdout"],
            },
        ],
        "stacked": False,
        "percent": True,
        "money": "",
    }
    return {"id": "conversion", "json": json.dumps(data), "title": "Converted by day"}


MINUS = "\N{MINUS SIGN}"


def _points(share: float | None) -> str:
    """A difference of rates in percentage points, signed: 0.012 -> "+1.20"; a negative
    one with a minus sign (U+2212), not a hyphen."""
    return "—" if share is None else f"{share * 100:+.2f}".replace("-", MINUS)


def _signed_money(amount: Decimal | None, currency: str) -> str:
    if amount is None:
        return "—"
    text = format_money(abs(amount), currency)
    return f"{MINUS}{text}" if amount < 0 else f"+{text}"


def _verdict(low: float | None, high: float | None) -> str:
    """What the 95 % interval says (docs/campaigns.md, "Reading an interval")."""
    if low is None or high is None:
        return ""
    if low > 0:
        return "raised"
    if high < 0:
        return "lowered"
    return "unclear"


def results_lift(results: CampaignResults, currency: str) -> dict[str, str]:
    """The lift's figures as the page writes them."""
    return {
        "points": _points(results.rate_difference),
        "low": _points(results.rate_difference_low),
        "high": _points(results.rate_difference_high),
        "relative": (
            f"{results.relative_lift * 100:+.0f}\N{NO-BREAK SPACE}%".replace("-", MINUS)
            if results.relative_lift is not None
            else ""
        ),
        "verdict": _verdict(results.rate_difference_low, results.rate_difference_high),
        "revenue": _signed_money(results.revenue_difference, currency),
        "revenue_low": _signed_money(results.revenue_difference_low, currency),
        "revenue_high": _signed_money(results.revenue_difference_high, currency),
        "revenue_verdict": _verdict(
            None
            if results.revenue_difference_low is None
            else float(results.revenue_difference_low),
            None
            if results.revenue_difference_high is None
            else float(results.revenue_difference_high),
        ),
    }


class CampaignResultsView(MerchantRequiredMixin, View):
    """Partial: the results over `?days=N` (1 to 90; default the campaign's attribution
    window): counts, the two groups, the lift or why it cannot be told, the chart."""

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        campaign = _campaign(request, pk)
        asked = request.GET.get("days")
        days = _days(asked)
        error = BAD_DAYS.format(days=campaign.attribution_days) if asked and days is None else ""
        results = campaign_results(campaign=campaign, days=days)
        currency = campaign.merchant.currency
        return render(
            request,
            "campaigns/partials/campaign_results.html",
            {
                "campaign": campaign,
                "results": results,
                "lift": results_lift(results, currency),
                "chart": results_chart(results),
                "final": results.final_at is not None and results.final_at <= timezone.now(),
                "days_error": error,
                "windows": _windows(campaign),
                "currency": currency,
                "skipped_rows": [
                    (reason.value, reason.label, results.skipped_by_reason.get(reason.value, 0))
                    for reason in SkipReason
                ],
            },
        )


class CampaignDeliveriesView(MerchantTableListView):
    """A campaign's deliveries, one per customer of its audience: status, skip reason,
    error, attempts and times, each linking the customer's page; filters by status and skip
    reason, customer search, CSV/XLSX export (roles that may export data)."""

    template_name = "campaigns/campaign_deliveries.html"
    partial_template_name = "campaigns/partials/campaign_delivery_table.html"
    filterset_class = DeliveryFilter
    table_class = DeliveryTable
    export_name = "deliveries"
    dataset_kwargs = {"title": "Deliveries"}
    campaign: Campaign

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        self.campaign = _campaign(request, kwargs["pk"])
        self.export_name = f"campaign-{self.campaign.pk}-deliveries"
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[Delivery]:
        # The campaign was looked up among the current merchant's (`get`).
        return (
            Delivery.objects.filter(campaign=self.campaign)
            .select_related("customer")
            .order_by("pk")
        )

    def get_table_kwargs(self) -> dict[str, Any]:
        return {"merchant": self.campaign.merchant}

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["campaign"] = self.campaign
        return context


class CampaignSendView(MerchantRequiredMixin, View):
    """POST: send now. Without `confirmed`, answered by a confirmation page (the campaign
    page asks in a dialog first) stating the eligible recipients and any stale segment."""

    permission = Action.SEND_CAMPAIGNS

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        campaign = _campaign(request, pk)
        if request.POST.get("confirmed") != "1":
            preview = audience.preview(campaign) if campaign.is_editable else None
            return render(
                request,
                "campaigns/campaign_confirm_send.html",
                {"campaign": campaign, "preview": preview},
            )
        try:
            size = campaign_start(campaign_id=campaign.pk, user_id=request.user.pk)
        except SendError as error:
            messages.error(request, str(error))
            return _detail(campaign)
        if size == 0 and not campaign.is_editable:
            messages.info(request, ALREADY_STARTED.format(name=campaign.name))
            return _detail(campaign)
        campaign.refresh_from_db()
        progress = selectors.campaign_progress(campaign)
        counts = {name: format_count(n) for name, n in progress.by_status.items()}
        text = SENT if campaign.status == CampaignStatus.SENT else SENDING
        messages.success(
            request, text.format(name=campaign.name, left=format_count(progress.left), **counts)
        )
        return _detail(campaign)


class CampaignScheduleView(MerchantRequiredMixin, View):
    """POST `send_at` (the merchant's local time): schedule the campaign, or move its
    schedule."""

    permission = Action.SEND_CAMPAIGNS

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        campaign = _campaign(request, pk)
        merchant = campaign.merchant
        form = ScheduleForm(request.POST, merchant=merchant)
        if not form.is_valid():
            for errors in form.errors.values():
                for message in errors:
                    messages.error(request, f"Send at: {message}")
            return _detail(campaign)
        try:
            campaign = campaign_schedule(
                campaign=campaign, send_at=form.cleaned_data["send_at"], user=request.user
            )
        except ValidationError as error:
            _error_messages(request, error)
            return _detail(campaign)
        when = timezone.localtime(campaign.send_at, merchant.tzinfo)
        messages.success(
            request,
            SCHEDULED.format(
                name=campaign.name, when=f"{when:%Y-%m-%d at %H:%M}", zone=merchant.time_zone
            ),
        )
        return _detail(campaign)


class CampaignUnscheduleView(MerchantRequiredMixin, View):
    """POST: a scheduled campaign goes back to draft."""

    permission = Action.SEND_CAMPAIGNS

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        campaign = _campaign(request, pk)
        try:
            campaign_unschedule(campaign=campaign)
        except ValidationError as error:
            _error_messages(request, error)
        else:
            messages.success(request, UNSCHEDULED.format(name=campaign.name))
        return _detail(campaign)


class CampaignTestView(MerchantRequiredMixin, View):
    """POST: send the campaign, rendered for its first member, to the signed-in user's
    email address (an SMS or push arrives as an email showing it)."""

    permission = Action.DRAFT_CAMPAIGNS

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        campaign = _campaign(request, pk)
        try:
            message = campaign_test_send(campaign=campaign, user=request.user)
        except ValidationError as error:
            _error_messages(request, error)
        else:
            if campaign.channel == Channel.EMAIL:
                messages.success(request, TEST_SENT.format(to=message.to))
            else:
                label = str(Channel(campaign.channel).label)
                messages.success(request, TEST_SENT_AS_EMAIL.format(to=message.to, channel=label))
        return _detail(campaign)


class CampaignDuplicateView(MerchantRequiredMixin, View):
    """POST: a new draft with the campaign's content and segments; opens its edit page."""

    permission = Action.DRAFT_CAMPAIGNS

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        copy = campaign_duplicate(campaign=_campaign(request, pk), user=request.user)
        messages.success(request, DUPLICATED.format(name=copy.name))
        return redirect("campaigns:edit", pk=copy.pk)


class CampaignDeleteView(MerchantRequiredMixin, View):
    """GET: confirm removing a draft or scheduled campaign; POST: remove it. A started
    campaign is kept (its deliveries and results): the page says so."""

    permission = Action.SEND_CAMPAIGNS

    def _kept(self, request: HttpRequest, campaign: Campaign) -> HttpResponse | None:
        if campaign.is_editable:
            return None
        messages.warning(
            request, NOT_REMOVABLE.format(name=campaign.name, status=_status_text(campaign))
        )
        return _detail(campaign)

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        campaign = _campaign(request, pk)
        if kept := self._kept(request, campaign):
            return kept
        return render(request, "campaigns/campaign_confirm_delete.html", {"campaign": campaign})

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        campaign = _campaign(request, pk)
        if kept := self._kept(request, campaign):
            return kept
        try:
            campaign_delete(campaign=campaign)
        except ValidationError as error:
            _error_messages(request, error)
            return _detail(campaign)
        messages.success(request, REMOVED.format(name=campaign.name))
        return redirect("campaigns:list")


class ContactRulesView(MerchantRequiredMixin, View):
    """The merchant's frequency cap and quiet hours: everyone reads them; managers and
    owners change them (POST)."""

    def get_permission(self, request: HttpRequest) -> Action:
        return Action.SEND_CAMPAIGNS if request.method == "POST" else Action.VIEW

    def _render(self, request: HttpRequest, form: ContactRulesForm) -> HttpResponse:
        return render(
            request,
            "campaigns/campaign_rules.html",
            # The rules as saved (the form's instance holds what was typed).
            {"form": form, "rules": audience.contact_rules_of(current_merchant(request))},
            status=400 if form.is_bound and form.errors else 200,
        )

    def get(self, request: HttpRequest) -> HttpResponse:
        rules = audience.contact_rules_of(current_merchant(request))
        return self._render(request, ContactRulesForm(instance=rules))

    def post(self, request: HttpRequest) -> HttpResponseBase:
        merchant = current_merchant(request)
        form = ContactRulesForm(request.POST, instance=audience.contact_rules_of(merchant))
        if form.is_valid():
            try:
                contact_rules_save(merchant=merchant, **form.cleaned_data)
            except ValidationError as error:
                form.add_error(None, error)
            else:
                messages.success(request, RULES_SAVED)
                return redirect(reverse("campaigns:rules"))
        return self._render(request, form)
