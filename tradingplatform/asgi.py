import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradingplatform.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up first)
from channels.routing import ProtocolTypeRouter  # noqa: E402

from tenants.resolution import TenantWebsocketMiddleware  # noqa: E402
from tradingplatform.network import ProxyHeadersMiddleware  # noqa: E402
from tradingplatform.routing import websocket_application  # noqa: E402

# Behind a trusted proxy (TRUSTED_PROXIES) the client's address and scheme are the proxy's headers'.
application = ProxyHeadersMiddleware(ProtocolTypeRouter(
    # The session middleware lets a desk page's socket authenticate with its login; API clients
    # send a token instead (see tenants.resolution).
    {"http": django_asgi_app, "websocket": AuthMiddlewareStack(TenantWebsocketMiddleware(websocket_application))}
))
