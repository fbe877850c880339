from typing import Any

from django.http import HttpRequest

from customers.portal.permissions import role_permissions


def current_merchant(request: HttpRequest) -> dict[str, Any]:
    """The current merchant, the user's role there and what it allows (`can.<action>`,
    see `customers.portal.permissions`), and, for the switcher, every merchant of the user."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    membership = getattr(request, "membership", None)
    return {
        "current_merchant": getattr(request, "merchant", None),
        "current_membership": membership,
        "can": role_permissions(membership.role if membership is not None else None),
        # Loaded once per request by CurrentMerchantMiddleware.
        "user_memberships": getattr(request, "memberships", []),
    }
