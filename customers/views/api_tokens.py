"""The owners' page of API tokens (`Action.MANAGE_API_TOKENS`): the merchant's tokens, a
form that makes one, and revoking one.

A new token's plaintext is rendered once, in the response to the POST that made it: it is
never stored, put in a message, a cookie or a URL (only its hash is kept, see
`customers.api_tokens`). Tenancy: the list and the revoke lookup start from the current
merchant's tokens, so another merchant's token id answers 404.
"""

from __future__ import annotations

import datetime as dt

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views import View

from customers.api_tokens import api_token_create, api_token_revoke
from customers.models import ApiToken, ApiTokenScope
from customers.portal.permissions import Action
from customers.portal.tenancy import MerchantRequiredMixin, current_merchant, merchant_queryset

MSG_REVOKED = 'The token "{name}" is revoked: requests with it now get 401.'
MSG_ALREADY_REVOKED = 'The token "{name}" was already revoked.'


class ApiTokenForm(forms.Form):
    name = forms.CharField(
        max_length=100, help_text="What uses it, e.g. the loyalty app or the point of sale."
    )
    scope = forms.ChoiceField(
        choices=ApiTokenScope.choices,
        initial=ApiTokenScope.READ,
        widget=forms.RadioSelect,
    )
    expires_in_days = forms.IntegerField(
        label="Expires in (days)",
        required=False,
        min_value=1,
        max_value=3650,
        help_text="Leave empty for a token that does not expire.",
    )

    def expires_at(self) -> dt.datetime | None:
        days = self.cleaned_data.get("expires_in_days")
        return timezone.now() + dt.timedelta(days=days) if days else None


class ApiTokensView(MerchantRequiredMixin, View):
    """GET: the tokens and the form; POST: make a token and show its plaintext once."""

    permission = Action.MANAGE_API_TOKENS

    def get(self, request: HttpRequest) -> HttpResponse:
        return self.page(request, ApiTokenForm())

    def post(self, request: HttpRequest) -> HttpResponse:
        form = ApiTokenForm(request.POST)
        if not form.is_valid():
            return self.page(request, form, status=400)
        try:
            token, plaintext = api_token_create(
                merchant=current_merchant(request),
                name=form.cleaned_data["name"],
                scope=form.cleaned_data["scope"],
                expires_at=form.expires_at(),
                user=request.user if request.user.is_authenticated else None,
            )
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                target = field if field in form.fields else None
                for error in errors:
                    form.add_error(target, error)
            return self.page(request, form, status=400)
        response = self.page(request, ApiTokenForm(), new_token=token, plaintext=plaintext)
        # The plaintext is in this response only: keep it out of every cache.
        response["Cache-Control"] = "no-store"
        return response

    def page(
        self,
        request: HttpRequest,
        form: ApiTokenForm,
        *,
        new_token: ApiToken | None = None,
        plaintext: str | None = None,
        status: int = 200,
    ) -> HttpResponse:
        tokens = merchant_queryset(request, ApiToken).select_related("created_by")
        return render(
            request,
            "customers/api_tokens.html",
            {
                "form": form,
                "tokens": tokens.order_by("-created_at", "-pk"),
                "new_token": new_token,
                "plaintext": plaintext,
                "now": timezone.now(),
            },
            status=status,
        )


class ApiTokenRevokeView(MerchantRequiredMixin, View):
    """POST: revoke one of the current merchant's tokens."""

    permission = Action.MANAGE_API_TOKENS

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        token = get_object_or_404(merchant_queryset(request, ApiToken), pk=pk)
        if token.revoked_at is not None:
            messages.info(request, MSG_ALREADY_REVOKED.format(name=token.name))
        else:
            api_token_revoke(token=token)
            messages.success(request, MSG_REVOKED.format(name=token.name))
        return redirect("customers:api_tokens")
