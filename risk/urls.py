from django.urls import path

from risk import api

urlpatterns = [
    path("risk/history", api.BookHistoryView.as_view(), name="risk-history"),
    path("risk/reset-breaker", api.BreakerResetView.as_view(), name="risk-reset-breaker"),
    path("orders", api.OrdersView.as_view(), name="orders"),
    path("orders/<str:client_order_id>/cancel", api.OrderCancelView.as_view(), name="order-cancel"),
]
