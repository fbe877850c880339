"""The owners' webhook pages (`Action.MANAGE_WEBHOOKS`): the merchant's endpoints, the form
that registers or changes one, an endpoint's page with its delivery log, and the POSTs that
switch it off and on, rotate its secret, remove it and resend a delivery.

A signing secret is rendered once, in the response to the POST that made it (registering,
rotating), with `Cache-Control: no-store`, like a new API token; the endpoint's page never
shows it. Tenancy: every endpoint is looked up among the current merchant's
(`_endpoint`), and every delivery among that endpoint's, so another merchant's ids answer
404.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views import View

from campaigns import selectors
from campaigns.filters import WebhookDeliveryFilter
from campaigns.models import WebhookDelivery, WebhookDeliveryStatus, WebhookEndpoint, WebhookEvent
from campaigns.services.webhooks import (
    delivery_resend,
    endpoint_create,
    endpoint_delete,
    endpoint_disable,
    endpoint_enable,
    endpoint_secret_rotate,
    endpoint_update,
    message_body,
)
from campaigns.tables import WebhookDeliveryTable
from campaigns.webhook_forms import WebhookEndpointForm
from campaigns.webhooks import USER_AGENT
from customers.portal.lists import MerchantTableListView
from customers.portal.permissions import Action
from customers.portal.tenancy import MerchantRequiredMixin, current_merchant, merchant_queryset

MSG_SAVED = "The endpoint {url} is saved."
MSG_SWITCHED_ON = "The endpoint {url} is switched on: new events reach it, waiting ones go now."
MSG_SWITCHED_OFF = "The endpoint {url} is switched off: no new events are sent to it."
MSG_REMOVED = "The endpoint {url} and its delivery log are removed."
MSG_RESENT = "The message {key} is sent again now (same webhook-id)."
MSG_BUSY = "The message {key} is being sent right now: see the log in a moment."
REASON_BY_OWNER = "Switched off by {user} on the Webhooks page."


def _endpoint(request: HttpRequest, pk: int) -> WebhookEndpoint:
    """One of the current merchant's endpoints (another merchant's id: 404)."""
    return get_object_or_404(
        merchant_queryset(request, WebhookEndpoint).select_related("merchant"), pk=pk
    )


def _delivery(endpoint: WebhookEndpoint, pk: int) -> WebhookDelivery:
    """One of the endpoint's deliveries (the endpoint is the current merchant's)."""
    return get_object_or_404(
        WebhookDelivery.objects.filter(endpoint=endpoint).select_related("message"), pk=pk
    )


def _event_labels(endpoint: WebhookEndpoint) -> list[tuple[str, str]]:
    labels = dict(WebhookEvent.choices)
    return [(event, str(labels.get(event, event))) for event in endpoint.events]


def _secret_page(
    request: HttpRequest, endpoint: WebhookEndpoint, secret: str, *, rotated: bool
) -> HttpResponse:
    response = render(
        request,
        "campaigns/webhooks/secret.html",
        {"endpoint": endpoint, "secret": secret, "rotated": rotated},
    )
    # The secret is in this response only: keep it out of every cache.
    response["Cache-Control"] = "no-store"
    return response


class WebhookListView(MerchantRequiredMixin, View):
    """The merchant's endpoints: address, events, on or off, last delivery, counts."""

    permission = Action.MANAGE_WEBHOOKS

    def get(self, request: HttpRequest) -> HttpResponse:
        endpoints = selectors.webhook_endpoint_list(merchant=current_merchant(request))
        return render(
            request,
            "campaigns/webhooks/list.html",
            {"rows": [(endpoint, _event_labels(endpoint)) for endpoint in endpoints]},
        )


class WebhookFormView(MerchantRequiredMixin, View):
    """GET: the form (new, or `pk`'s values); POST: register (and show the secret once) or
    save the changes."""

    permission = Action.MANAGE_WEBHOOKS

    def get(self, request: HttpRequest, pk: int | None = None) -> HttpResponse:
        endpoint = _endpoint(request, pk) if pk is not None else None
        form = (
            WebhookEndpointForm.for_endpoint(endpoint)
            if endpoint
            else WebhookEndpointForm(initial={"events": []})
        )
        return self.page(request, form, endpoint)

    def post(self, request: HttpRequest, pk: int | None = None) -> HttpResponse:
        endpoint = _endpoint(request, pk) if pk is not None else None
        form = WebhookEndpointForm(request.POST)
        if not form.is_valid():
            return self.page(request, form, endpoint, status=400)
        values = form.cleaned_data
        try:
            if endpoint is None:
                created = endpoint_create(
                    merchant=current_merchant(request),
                    url=values["url"],
                    events=values["events"],
                    description=values["description"],
                    actor=request.user,
                )
            else:
                endpoint_update(
                    endpoint=endpoint,
                    url=values["url"],
                    events=values["events"],
                    description=values["description"],
                )
        except ValidationError as error:
            form.add_service_errors(error)
            return self.page(request, form, endpoint, status=400)
        if endpoint is None:
            return _secret_page(request, created, created.secret, rotated=False)
        messages.success(request, MSG_SAVED.format(url=endpoint.url))
        return redirect("webhooks:detail", pk=endpoint.pk)

    def page(
        self,
        request: HttpRequest,
        form: WebhookEndpointForm,
        endpoint: WebhookEndpoint | None,
        *,
        status: int = 200,
    ) -> HttpResponse:
        return render(
            request,
            "campaigns/webhooks/form.html",
            {"form": form, "endpoint": endpoint},
            status=status,
        )


class WebhookDetailView(MerchantTableListView):
    """An endpoint: its details, its state (a banner when switched off), its counts and its
    delivery log (filtered by status and event, sorted, paged; the export has every row)."""

    permission = Action.MANAGE_WEBHOOKS
    template_name = "campaigns/webhooks/detail.html"
    partial_template_name = "campaigns/webhooks/partials/delivery_table.html"
    filterset_class = WebhookDeliveryFilter
    table_class = WebhookDeliveryTable
    export_name = "webhook-deliveries"
    dataset_kwargs = {"title": "Webhook deliveries"}
    endpoint: WebhookEndpoint

    def get_permission(self, request: HttpRequest) -> Action:
        # The log is the owners' page, exported or not (every owner may export data).
        return self.permission

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        self.endpoint = _endpoint(request, kwargs["pk"])
        self.export_name = f"webhook-{self.endpoint.pk}-deliveries"
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[WebhookDelivery]:
        # The endpoint was looked up among the current merchant's (`get`).
        return (
            WebhookDelivery.objects.filter(endpoint=self.endpoint)
            .select_related("message")
            .order_by("-created_at", "-pk")
        )

    def get_table_kwargs(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint}

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        stats = selectors.webhook_delivery_counts(endpoint_ids=[self.endpoint.pk])[self.endpoint.pk]
        context["endpoint"] = self.endpoint
        context["stats"] = {
            "delivered": stats[WebhookDeliveryStatus.SUCCEEDED],
            "pending": stats[WebhookDeliveryStatus.PENDING] + stats[WebhookDeliveryStatus.SENDING],
            "failed": stats[WebhookDeliveryStatus.FAILED],
        }
        context["events"] = _event_labels(self.endpoint)
        context["retry_hours"] = settings.WEBHOOK_RETRY_HOURS
        context["disable_after_hours"] = settings.WEBHOOK_DISABLE_AFTER_HOURS
        return context


class WebhookDeliveryView(MerchantRequiredMixin, View):
    """One delivery of the log: how its attempts went, the headers it is sent with (but the
    signature) and the message's payload, pretty-printed."""

    permission = Action.MANAGE_WEBHOOKS

    def get(self, request: HttpRequest, pk: int, delivery_pk: int) -> HttpResponse:
        endpoint = _endpoint(request, pk)
        delivery = _delivery(endpoint, delivery_pk)
        message = delivery.message
        body = message_body(message)
        return render(
            request,
            "campaigns/webhooks/delivery.html",
            {
                "endpoint": endpoint,
                "delivery": delivery,
                "message": message,
                "headers": {
                    "Content-Type": "application/json",
                    "User-Agent": USER_AGENT,
                    "webhook-id": message.key,
                },
                "payload": json.dumps(message.payload, indent=2, ensure_ascii=False),
                "body_bytes": len(body),
            },
        )


class WebhookSwitchView(MerchantRequiredMixin, View):
    """POST `active=1`: switch on; `active=0` (with an optional `reason`): switch off."""

    permission = Action.MANAGE_WEBHOOKS

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        endpoint = _endpoint(request, pk)
        if request.POST.get("active") == "1":
            endpoint_enable(endpoint=endpoint)
            messages.success(request, MSG_SWITCHED_ON.format(url=endpoint.url))
        else:
            reason = request.POST.get("reason", "").strip() or REASON_BY_OWNER.format(
                user=request.user.get_username()
            )
            endpoint_disable(endpoint=endpoint, reason=reason)
            messages.success(request, MSG_SWITCHED_OFF.format(url=endpoint.url))
        return redirect("webhooks:detail", pk=endpoint.pk)


class WebhookRotateView(MerchantRequiredMixin, View):
    """POST: a new signing secret, shown once in the answer; the old one stops at once."""

    permission = Action.MANAGE_WEBHOOKS

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        endpoint = _endpoint(request, pk)
        secret = endpoint_secret_rotate(endpoint=endpoint)
        return _secret_page(request, endpoint, secret, rotated=True)


class WebhookDeleteView(MerchantRequiredMixin, View):
    """POST: remove the endpoint and its delivery log (the page asks first)."""

    permission = Action.MANAGE_WEBHOOKS

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        endpoint = _endpoint(request, pk)
        url = endpoint.url
        endpoint_delete(endpoint=endpoint)
        messages.success(request, MSG_REMOVED.format(url=url))
        return redirect("webhooks:list")


class WebhookResendView(MerchantRequiredMixin, View):
    """POST: send one delivery's message again now (refused while the endpoint is off)."""

    permission = Action.MANAGE_WEBHOOKS

    def post(self, request: HttpRequest, pk: int, delivery_pk: int) -> HttpResponse:
        endpoint = _endpoint(request, pk)
        delivery = _delivery(endpoint, delivery_pk)
        key = delivery.message.key
        if delivery.status == WebhookDeliveryStatus.SENDING:
            messages.info(request, MSG_BUSY.format(key=key))
        else:
            try:
                delivery_resend(delivery=delivery)
            except ValidationError as error:
                for message in error.messages:
                    messages.error(request, message)
            else:
                messages.success(request, MSG_RESENT.format(key=key))
        return redirect("webhooks:detail", pk=endpoint.pk)
