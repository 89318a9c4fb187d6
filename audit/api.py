"""GET /clients/{client_id}/audit: the client's own audit trail, for its members."""
from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response

from audit.rls import audit_read
from audit.selectors import audit_events_query
from audit.serializers import MAX_PAGE_SIZE, PAGE_SIZE, AuditEventQuerySerializer, AuditEventSerializer
from tenants.resolution import ClientScopedAPIView


class AuditCursorPagination(CursorPagination):
    """Newest first by the chain's sequence: pages stay stable while new events arrive."""

    ordering = "-sequence"
    page_size = PAGE_SIZE
    page_size_query_param = "limit"
    max_page_size = MAX_PAGE_SIZE

    def decode_cursor(self, request: Request):
        try:
            return super().decode_cursor(request)
        except exceptions.NotFound as exc:  # DRF answers a bad cursor with 404; it is bad input
            raise exceptions.ValidationError({self.cursor_query_param: ["Invalid cursor."]}) from exc


class AuditEventListView(ClientScopedAPIView):
    pagination_class = AuditCursorPagination

    @extend_schema(
        summary="The client's audit trail",
        description=(
            "Append-only events for this client, newest first, with each row's place in the client's "
            "hash chain (`sequence`, `hash`). Paginated by cursor: follow `next` / `previous`. "
            "Filters: `kind` (exact, or a family such as `risk.*`), `actor_type`, `actor_id`, `since` "
            "(inclusive) and `until` (exclusive). Any viewer of the client may read it."
        ),
        parameters=[AuditEventQuerySerializer],
        responses={
            200: AuditEventSerializer(many=True),
            400: OpenApiResponse(description="A filter, the limit or the cursor is invalid; `errors` names it."),
        },
        tags=["audit"],
    )
    def get(self, request: Request, client_id: str) -> Response:
        query = AuditEventQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        client_id = self.client_access.client.client_id
        paginator = self.pagination_class()
        # Both layers: the ORM filter on client_id, and the policy under this client's setting.
        with audit_read(client_id=client_id):
            page = paginator.paginate_queryset(
                audit_events_query(client_id=client_id, filters=query.filters()), request, view=self
            )
            rows = AuditEventSerializer(page, many=True).data
        return paginator.get_paginated_response(rows)
