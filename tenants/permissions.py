"""Who is an operator: a staff user's token (with a second factor while MFA_REQUIRED_FOR_STAFF),
or the `X-Admin-Key` header."""
from __future__ import annotations

import hmac

from django.conf import settings
from rest_framework import exceptions, status
from rest_framework.permissions import BasePermission

ADMIN_KEY_HEADER = "X-Admin-Key"


class MfaRequired(exceptions.APIException):
    """403 `mfa_required`: this needs a login made with a second factor (a client's policy, or an
    operator while MFA_REQUIRED_FOR_STAFF)."""

    status_code = status.HTTP_403_FORBIDDEN
    default_detail = "This needs a login with two-factor authentication."
    default_code = "mfa_required"


def admin_key_matches(presented: str) -> bool:
    """Constant-time comparison; an unset ADMIN_API_KEY matches nothing."""
    expected = settings.ADMIN_API_KEY
    if not expected or not presented:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())


class HasAdminKey(BasePermission):
    """401 without the header, 403 with a wrong one."""

    def has_permission(self, request, view) -> bool:
        presented = request.headers.get(ADMIN_KEY_HEADER, "")
        if not presented:
            raise exceptions.NotAuthenticated(f"The {ADMIN_KEY_HEADER} header is required.")
        if not admin_key_matches(presented):
            raise exceptions.PermissionDenied(f"The {ADMIN_KEY_HEADER} header is not valid.")
        return True


class IsOperator(BasePermission):
    """A staff user's access token, or a valid admin key."""

    def has_permission(self, request, view) -> bool:
        presented = request.headers.get(ADMIN_KEY_HEADER, "")
        if presented:
            if admin_key_matches(presented):
                return True
            raise exceptions.PermissionDenied(f"The {ADMIN_KEY_HEADER} header is not valid.")
        if not (request.user and request.user.is_authenticated):
            raise exceptions.NotAuthenticated()
        if not request.user.is_staff:
            return False
        from tenants.mfa import mfa_missing_reason, token_used_second_factor

        if reason := mfa_missing_reason(user=request.user, verified=token_used_second_factor(request.auth)):
            raise MfaRequired(reason)
        return True
