"""Request hygiene before any view runs: malformed input answered as a clear 4xx in JSON."""
from __future__ import annotations

from typing import Any

from django.http import JsonResponse


class RejectNulBytesMiddleware:
    """A NUL byte cannot be stored in PostgreSQL text and names nothing: in the path it is a 404
    (no such resource), in the query string a 400; neither reaches a view or the database."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        if "\x00" in request.path_info or "\x00" in request.path:
            return JsonResponse({"detail": "Not found.", "code": "not_found"}, status=404)
        if any("\x00" in key or any("\x00" in value for value in values)
               for key, values in request.GET.lists()):
            return JsonResponse({"detail": "The query string contains a NUL byte.", "code": "invalid"}, status=400)
        return self.get_response(request)
