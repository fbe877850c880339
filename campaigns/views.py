"""Portal pages of the campaigns app. So far: the customer page's "Offers and content" part.

Tenancy: the customer is looked up among the current merchant's customers, so another
merchant's ids answer 404.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views import View

from campaigns import selectors
from campaigns.models import CodeMode, CouponCode
from customers.models import Customer
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
