from django.urls import path

from audit.api import AuditEventListView

urlpatterns = [
    path("audit", AuditEventListView.as_view(), name="audit-events"),
]
