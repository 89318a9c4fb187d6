"""Operator console: every client's audit trail, read-only."""
from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse

from audit.models import AuditEvent
from audit.rls import rls_context


def _rendered(response: HttpResponse) -> HttpResponse:
    # Admin pages are TemplateResponses rendered after the view returns, and the rows are read
    # while rendering: render inside the operator's policy scope.
    if hasattr(response, "render") and not response.is_rendered:
        response.render()
    return response


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "client_label", "sequence", "kind", "actor_type", "actor_id"]
    list_filter = ["client_id", "kind", "actor_type", "created_at"]
    search_fields = ["client_id", "kind", "actor_id", "payload"]
    date_hierarchy = "created_at"
    ordering = ["-created_at", "-id"]
    list_per_page = 100
    readonly_fields = [
        "client_id", "sequence", "actor_type", "actor_id", "kind", "payload", "created_at", "hash",
    ]

    @admin.display(description="client", ordering="client_id")
    def client_label(self, event: AuditEvent) -> str:
        return event.client_id or "(platform)"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False

    # The row-level security policy shows every client's rows only to an admin session; with
    # these settings the console works when the platform's database user is not a superuser.
    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        with rls_context(client_id=None, is_admin=True):
            return _rendered(super().changelist_view(request, extra_context))

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        with rls_context(client_id=None, is_admin=True):
            return _rendered(super().change_view(request, object_id, form_url, extra_context))
