"""API-wide error handling: every error is JSON `{"detail": ..., "code": ...}`, never a traceback."""
from __future__ import annotations

import io
import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions, parsers, serializers, status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response

from brokers.domain import BrokerError

logger = logging.getLogger(__name__)


class LimitOffsetPages(LimitOffsetPagination):
    """`?limit=&offset=` with a default page, so a list is always the paginated envelope."""

    default_limit = 50
    max_limit = 500


# No request body of the API nests deeper than a handful of levels; far deeper ones are refused
# before any serializer walks them (and before Python's recursion limit is anywhere near).
MAX_JSON_DEPTH = 32


def json_depth_exceeds(data: Any, limit: int) -> bool:
    """Whether `data` nests lists/objects more than `limit` levels deep (iterative: no recursion)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (value.values() if isinstance(value, dict) else value))
    return False


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "request_too_large"


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, bounded: a body over DATA_UPLOAD_MAX_MEMORY_SIZE is a 413 (DRF reads the
    stream, which Django's own check never sees) and too-deep nesting a 400, not a RecursionError's
    500."""

    def parse(self, stream, media_type=None, parser_context=None):
        from django.conf import settings

        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read(limit + 1) if limit is not None else stream.read()
        if limit is not None and len(raw) > limit:
            raise RequestTooLarge()
        try:
            data = super().parse(io.BytesIO(raw), media_type, parser_context)
        except RecursionError as exc:
            raise exceptions.ParseError(f"JSON parse error - nested more than {MAX_JSON_DEPTH} levels deep") from exc
        if json_depth_exceeds(data, MAX_JSON_DEPTH):
            raise exceptions.ParseError(f"JSON parse error - nested more than {MAX_JSON_DEPTH} levels deep")
        return data


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
    if isinstance(exc, BrokerError):
        logger.warning("broker error", extra={"broker_error": exc.payload()})
        code = status.HTTP_503_SERVICE_UNAVAILABLE if exc.retryable else status.HTTP_502_BAD_GATEWAY
        return Response({"detail": exc.payload(), "code": "broker_error"}, status=code)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    # Imported here: rest_framework.views reads DEFAULT_PARSER_CLASSES, which names this module's
    # JSONParser, so importing it at the top made this module import itself half-initialized
    # whenever it was imported before the URL conf (a Celery worker publishing a proposal).
    from rest_framework.views import exception_handler as drf_exception_handler

    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        response.data = {"detail": "Invalid input.", "code": "invalid", "errors": response.data}
    elif isinstance(response.data, dict) and "code" not in response.data:
        codes = exc.get_codes() if isinstance(exc, exceptions.APIException) else None
        response.data["code"] = codes if isinstance(codes, str) else "error"
    return response
