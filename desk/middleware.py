"""A Content-Security-Policy of 'self' on every page the platform writes: no inline script, no
third-party origin (the console and Swagger UI, which Django and drf-spectacular write with inline
script, keep their own headers).
The websocket's origin is the page's own (`connect-src 'self'` covers ws: and wss: of the same
host in current browsers)."""
from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
          "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
          "frame-ancestors 'none'")


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.get("Content-Type", "").startswith("text/html") and not request.path.startswith(
                ("/admin/", "/api/docs/")):
            response.setdefault("Content-Security-Policy", POLICY)
        return response
