"""API-wide error handling: every error is JSON `{"detail": ..., "code": ...}`, never a traceback."""
from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions, serializers, status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from brokers.domain import BrokerError
from tradingplatform.outages import outage_body, outage_logged, retry_after_seconds, unavailable_dependency

logger = logging.getLogger(__name__)


class LimitOffsetPages(LimitOffsetPagination):
    """`?limit=&offset=` with a default page, so a list is always the paginated envelope."""

    default_limit = 50
    max_limit = 500


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The resource is not in a state that allows this."
    default_code = "conflict"


class RejectsUnknownKeysSerializer(serializers.Serializer):
    """Unknown keys are field errors, not silently dropped, and are reported together with every
    other field's error."""

    unknown_key_message = "Unknown parameter."

    def to_internal_value(self, data):
        unknown = sorted(set(data) - set(self.fields)) if isinstance(data, dict) else []
        errors = {name: [self.unknown_key_message] for name in unknown}
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if not errors:
                raise
            detail = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
            raise serializers.ValidationError({**detail, **errors}) from exc
        if errors:
            raise serializers.ValidationError(errors)
        return value


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    # A broker call that failed because the way to the broker is down (the IBKR session process
    # is reached over Redis) is that dependency's outage, not the broker's error.
    if (dependency := unavailable_dependency(exc.__cause__ if isinstance(exc, BrokerError) else exc)) is not None:
        request = context.get("request")
        outage_logged(dependency, exc, getattr(request, "path", ""))
        response = Response(outage_body(dependency), status=status.HTTP_503_SERVICE_UNAVAILABLE,
                            headers={"Retry-After": str(retry_after_seconds())})
        response._has_been_logged = True  # logged once, as a warning, above
        return response
    if isinstance(exc, BrokerError):
        logger.warning("broker error", extra={"broker_error": exc.payload()})
        code = status.HTTP_503_SERVICE_UNAVAILABLE if exc.retryable else status.HTTP_502_BAD_GATEWAY
        return Response({"detail": exc.payload(), "code": "broker_error"}, status=code)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        response.data = {"detail": "Invalid input.", "code": "invalid", "errors": response.data}
    elif isinstance(response.data, dict) and "code" not in response.data:
        codes = exc.get_codes() if isinstance(exc, exceptions.APIException) else None
        response.data["code"] = codes if isinstance(codes, str) else "error"
    return response
