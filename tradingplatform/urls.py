import sys

from django.contrib import admin
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from risk import api as risk_api
from tenants import api as tenants_api
from tradingplatform import health
from tradingplatform.outages import outage_logged, outage_response, unavailable_dependency

urlpatterns = [
    path("health", health.liveness, name="health"),
    path("health/ready", health.readiness, name="health-ready"),
    path("auth/login", tenants_api.LoginView.as_view(), name="auth-login"),
    path("auth/refresh", tenants_api.RefreshView.as_view(), name="auth-refresh"),
    path("auth/logout", tenants_api.LogoutView.as_view(), name="auth-logout"),
    path("auth/password", tenants_api.PasswordChangeView.as_view(), name="auth-password"),
    path("auth/login/2fa", tenants_api.MfaLoginView.as_view(), name="auth-login-2fa"),
    path("auth/2fa", tenants_api.MfaStatusView.as_view(), name="auth-2fa"),
    path("auth/2fa/enrol", tenants_api.MfaEnrolView.as_view(), name="auth-2fa-enrol"),
    path("auth/2fa/confirm", tenants_api.MfaConfirmView.as_view(), name="auth-2fa-confirm"),
    path("auth/2fa/disable", tenants_api.MfaDisableView.as_view(), name="auth-2fa-disable"),
    path("clients/onboard", tenants_api.OnboardView.as_view(), name="clients-onboard"),
    path("me/clients", tenants_api.MyClientsView.as_view(), name="me-clients"),
    path("clients/<str:client_id>/security/mfa-policy", tenants_api.ClientMfaPolicyView.as_view(),
         name="client-mfa-policy"),
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
    # Django calls this inside its `except`: an error raised by a middleware (the session's
    # query, say) that is a dependency's outage is a 503 too (views' are met earlier).
    if (dependency := unavailable_dependency(error := sys.exc_info()[1])) is not None:
        outage_logged(dependency, error, request.path)
        return outage_response(request, dependency)
    return JsonResponse(
        {"detail": "Internal server error.", "code": "server_error",
         "request_id": getattr(request, "request_id", "")},
        status=500,
    )


def bad_request(request, exception=None, *args, **kwargs):
    """Django's own 400s (a body over DATA_UPLOAD_MAX_MEMORY_SIZE, a bad Host...) in the API's shape."""
    if isinstance(exception, RequestDataTooBig):
        return JsonResponse({"detail": "The request body is too large.", "code": "request_too_large"}, status=413)
    return JsonResponse({"detail": "Bad request.", "code": "bad_request"}, status=400)


def not_found(request, exception=None, *args, **kwargs):
    return JsonResponse({"detail": "Not found.", "code": "not_found"}, status=404)


handler400 = bad_request
handler500 = server_error
handler404 = not_found
