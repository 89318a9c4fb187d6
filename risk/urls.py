from django.urls import path

from risk import api

urlpatterns = [
    path("risk/history", api.BookHistoryView.as_view(), name="risk-history"),
    path("risk/reset-breaker", api.BreakerResetView.as_view(), name="risk-reset-breaker"),
]
