from typing import Any

from django.http import HttpRequest

from customers.models import StaffMembership


def current_merchant(request: HttpRequest) -> dict[str, Any]:
    """The current merchant and, for the switcher, every merchant the user belongs to."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {
        "current_merchant": getattr(request, "merchant", None),
        "current_membership": getattr(request, "membership", None),
        "user_memberships": StaffMembership.objects.filter(user=user).select_related("merchant"),
    }
