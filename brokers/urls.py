from django.urls import path

from brokers import api

urlpatterns = [
    path("connect-broker", api.ConnectBrokerView.as_view(), name="connect-broker"),
    path("positions", api.PositionsView.as_view(), name="positions"),
    path("trades", api.TradesView.as_view(), name="trades"),
]
