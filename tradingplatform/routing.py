"""Websocket routes, all under `/clients/{client_id}/` (the tenant middleware resolves the client)."""
from channels.routing import URLRouter

websocket_urlpatterns: list = []

websocket_application = URLRouter(websocket_urlpatterns)
