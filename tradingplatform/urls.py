from django.contrib import admin
from django.http import JsonResponse
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from risk import api as risk_api
from tenants import api as tenants_api
from tradingplatform import health

urlpatterns = [
    path("health", health.liveness, name="health"),
    path("health/ready", health.readiness, name="health-ready"),
    path("auth/login", tenants_api.LoginView.as_view(), name="auth-login"),
    path("auth/refresh", tenants_api.RefreshView.as_view(), name="auth-refresh"),
    path("auth/logout", tenants_api.LogoutView.as_view(), name="auth-logout"),
    path("clients/onboard", tenants_api.OnboardView.as_view(), name="clients-onboard"),
    path("clients/<str:client_id>/", include("agents.urls")),
    path("clients/<str:client_id>/", include("brokers.urls")),
    path("clients/<str:client_id>/", include("risk.urls")),
    path("clients/<str:client_id>/", include("audit.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("admin/emergency-halt", risk_api.EmergencyHaltView.as_view(), name="emergency-halt"),
    path("admin/clients/<str:client_id>/halt", risk_api.ClientHaltView.as_view(), name="client-halt"),
    path("admin/", admin.site.urls),
    path("", include("desk.urls")),
]


def server_error(request, *args, **kwargs):
    return JsonResponse(
        {"detail": "Internal server error.", "code": "server_error",
         "request_id": getattr(request, "request_id", "")},
        status=500,
    )


def not_found(request, exception=None, *args, **kwargs):
    return JsonResponse({"detail": "Not found.", "code": "not_found"}, status=404)


handler500 = server_error
handler404 = not_found
