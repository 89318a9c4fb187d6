"""Websocket routes, all under `/clients/{client_id}/` (the tenant middleware resolves the client)."""
from channels.routing import URLRouter
from django.urls import path

from agents.consumers import ClientStreamConsumer

websocket_urlpatterns = [
    path("clients/<str:client_id>/stream", ClientStreamConsumer.as_asgi()),
]

websocket_application = URLRouter(websocket_urlpatterns)
