import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradingplatform.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up first)
from channels.routing import ProtocolTypeRouter  # noqa: E402

from tenants.resolution import TenantWebsocketMiddleware  # noqa: E402
from tradingplatform.network import ProxyHeadersMiddleware  # noqa: E402
from tradingplatform.outages import WebsocketOutageGuard, daphne_server_close_codes_allow  # noqa: E402
from tradingplatform.routing import websocket_application  # noqa: E402

daphne_server_close_codes_allow()
# Behind a trusted proxy (TRUSTED_PROXIES) the client's address and scheme are the proxy's headers'.
application = ProxyHeadersMiddleware(ProtocolTypeRouter(
    # The session middleware lets a desk page's socket authenticate with its login; API clients
    # send a token instead (see tenants.resolution).
    # A dependency down closes a socket 1013 (try again later), before or after its handshake.
    {"http": django_asgi_app,
     "websocket": WebsocketOutageGuard(AuthMiddlewareStack(TenantWebsocketMiddleware(websocket_application)))}
))
