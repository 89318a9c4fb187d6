"""The desk's audit page: the client's own audit trail (any member may read it, as through the
API), filtered by kind or family (`risk.*`), actor and time, paged newest first, and exported
as CSV with the same filters (streamed in batches, each read under the row-level security
policy of this client)."""
from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import Any

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from rest_framework import serializers

from audit import kinds
from audit.models import AuditEvent
from audit.rls import audit_read
from audit.selectors import AuditEventFilter, audit_events_query
from audit.serializers import AuditEventQuerySerializer
from desk.views import page_context
from tenants.resolution import ClientScopedPageView

PAGE_SIZE = 50
CSV_BATCH = 1000
CSV_COLUMNS = ["sequence", "created_at", "kind", "actor_type", "actor_id", "payload", "hash"]
FAMILIES = sorted({value.split(".")[0] + ".*" for name, value in vars(kinds).items()
                   if name.isupper() and isinstance(value, str) and kinds.kind_is_valid(value)})
KNOWN_KINDS = sorted(value for name, value in vars(kinds).items()
                     if name.isupper() and isinstance(value, str) and kinds.kind_is_valid(value))


class AuditPageQuerySerializer(AuditEventQuerySerializer):
    before = serializers.IntegerField(min_value=1, required=False, help_text="Older than this sequence (paging).")


def _query(request: HttpRequest) -> AuditPageQuerySerializer:
    # A form sends its empty fields as empty strings: they mean "no filter".
    return AuditPageQuerySerializer(data={key: value.strip() for key, value in request.GET.items() if value.strip()})


def _events(client_id: str, filters: AuditEventFilter, *, before: int | None, limit: int) -> list[AuditEvent]:
    with audit_read(client_id=client_id):
        events = audit_events_query(client_id=client_id, filters=filters)
        if before is not None:
            events = events.filter(sequence__lt=before)
        return list(events[:limit])


def _page_params(request: HttpRequest, **changes: Any) -> str:
    params = request.GET.copy()
    for key, value in changes.items():
        params.pop(key, None)
        if value is not None:
            params[key] = str(value)
    return params.urlencode()


class AuditView(ClientScopedPageView):
    def get(self, request: HttpRequest, client_id: str) -> HttpResponse:
        context = page_context(request, self.client_access, timezone.now(), active="audit")
        context.update(families=FAMILIES, known_kinds=KNOWN_KINDS, values=request.GET,
                       actor_types=AuditEvent._meta.get_field("actor_type").choices)
        query = _query(request)
        if not query.is_valid():
            context["errors"] = {name: [str(message) for message in messages]
                                 for name, messages in query.errors.items()}
            return render(request, "desk/audit.html", context, status=400)
        limit = query.validated_data.get("limit", PAGE_SIZE)
        before = query.validated_data.get("before")
        events = _events(self.client_access.client.client_id, query.filters(), before=before, limit=limit + 1)
        more = len(events) > limit
        events = events[:limit]
        context.update(
            events=[{"event": event, "payload": json.dumps(event.payload, sort_keys=True, default=str)}
                    for event in events],
            older=_page_params(request, before=events[-1].sequence) if more and events else None,
            newest=_page_params(request, before=None) if before is not None else None,
            csv_query=_page_params(request, before=None, limit=None),
        )
        return render(request, "desk/audit.html", context)


class _Echo:
    def write(self, value: str) -> str:
        return value


def _cell(value: Any) -> str:
    """A spreadsheet never runs a cell as a formula: text starting with = + - @ (or a tab or CR)
    is quoted with a leading apostrophe."""
    text = value if isinstance(value, str) else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _csv_rows(client_id: str, filters: AuditEventFilter) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    before = None
    while True:
        batch = _events(client_id, filters, before=before, limit=CSV_BATCH)
        for event in batch:
            yield writer.writerow([event.sequence, event.created_at.isoformat(), _cell(event.kind),
                                   _cell(event.actor_type), _cell(event.actor_id),
                                   _cell(json.dumps(event.payload, sort_keys=True, default=str)), event.hash])
        if len(batch) < CSV_BATCH:
            return
        before = batch[-1].sequence


class AuditCsvView(ClientScopedPageView):
    def get(self, request: HttpRequest, client_id: str) -> HttpResponse:
        query = _query(request)
        if not query.is_valid():
            return AuditView.as_view()(request, client_id=client_id)
        client_id = self.client_access.client.client_id
        filters = query.filters()
        response = StreamingHttpResponse(_csv_rows(client_id, filters), content_type="text/csv; charset=utf-8")
        stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
        response["Content-Disposition"] = f'attachment; filename="audit-{client_id}-{stamp}.csv"'
        response["Cache-Control"] = "no-store"
        return response
