from typing import Any

from django.http import HttpRequest


def current_merchant(request: HttpRequest) -> dict[str, Any]:
    """The current merchant and, for the switcher, every merchant the user belongs to."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {
        "current_merchant": getattr(request, "merchant", None),
        "current_membership": getattr(request, "membership", None),
        # Loaded once per request by CurrentMerchantMiddleware.
        "user_memberships": getattr(request, "memberships", []),
    }
