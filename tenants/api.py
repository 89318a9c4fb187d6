"""Thin views: identity (login, refresh, logout) and client onboarding."""
from __future__ import annotations

from django.conf import settings
from django.contrib.auth import authenticate
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import OpenApiResponse, PolymorphicProxySerializer, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.exceptions import InvalidToken
from rest_framework_simplejwt.tokens import RefreshToken

from brokers.registry import credentials_validate
from tenants import mfa, services
from tenants.models import Membership
from tenants.permissions import IsOperator, MfaRequired
from tenants.resolution import ClientScopedAPIView, request_used_second_factor
from tenants.selectors import user_clients_list
from tenants.serializers import (
    ClientSerializer,
    LoginRequestSerializer,
    MfaChallengeSerializer,
    MfaCodeSerializer,
    MfaEnrolmentSerializer,
    MfaLoginRequestSerializer,
    MfaPolicySerializer,
    MfaRecoveryCodesSerializer,
    MfaStatusSerializer,
    OnboardRequestSerializer,
    PasswordChangeSerializer,
    RefreshRequestSerializer,
    TokenPairSerializer,
)
from tradingplatform.logging import user_var
from tradingplatform.network import client_ip


class TooManyLoginAttempts(exceptions.Throttled):
    default_detail = "Too many failed login attempts. Try again later."
    default_code = "login_throttled"


def _token_pair_response(refresh: RefreshToken) -> Response:
    lifetime = settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"]
    body = {
        "access": str(refresh.access_token),
        "refresh": str(refresh),
        "token_type": "Bearer",
        "expires_in": int(lifetime.total_seconds()),
    }
    return Response(TokenPairSerializer(body).data)


class TokenEndpoint(APIView):
    """Login, refresh and logout: open to anyone, the body carries what proves identity."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    def get_authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


LOGIN_RESPONSE = PolymorphicProxySerializer(
    component_name="LoginResponse", serializers=[TokenPairSerializer, MfaChallengeSerializer],
    resource_type_field_name=None)


class LoginView(TokenEndpoint):
    """The password. A user with two-factor authentication gets a short-lived `mfa_token` instead
    of tokens, to send with their code to POST /auth/login/2fa."""

    @extend_schema(
        request=LoginRequestSerializer,
        responses={200: LOGIN_RESPONSE, 401: OpenApiResponse(description="Bad credentials"),
                   429: OpenApiResponse(description="Too many failed attempts")},
        tags=["auth"],
    )
    def post(self, request: Request) -> Response:
        serializer = LoginRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        username = serializer.validated_data["username"]
        ip_address = client_ip(request)
        if retry_after := services.login_retry_after(username=username, ip_address=ip_address):
            raise TooManyLoginAttempts(wait=retry_after)
        user = authenticate(request, username=username, password=serializer.validated_data["password"])
        if user is None:
            services.login_failure_record(username=username, ip_address=ip_address, channel="api")
            raise exceptions.AuthenticationFailed("Invalid username or password.", code="invalid_credentials")
        if mfa.mfa_enabled(user=user):
            body = {"mfa_required": True, "mfa_token": mfa.mfa_login_token_issue(user=user),
                    "expires_in": settings.MFA_LOGIN_TOKEN_SECONDS}
            return Response(MfaChallengeSerializer(body).data)
        services.login_success_record(user=user, ip_address=ip_address, channel="api")
        return _token_pair_response(services.token_pair_issue(user=user))


class MfaLoginView(TokenEndpoint):
    """The second step: the `mfa_token` from POST /auth/login and a code from the authenticator
    (or a recovery code, once). Wrong codes count as failed logins (the same throttle)."""

    @extend_schema(
        request=MfaLoginRequestSerializer,
        responses={200: TokenPairSerializer, 401: OpenApiResponse(description="Wrong code or expired login"),
                   429: OpenApiResponse(description="Too many failed attempts")},
        tags=["auth"],
    )
    def post(self, request: Request) -> Response:
        serializer = MfaLoginRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            user = mfa.mfa_login_token_user(token=serializer.validated_data["mfa_token"])
        except mfa.MfaLoginTokenInvalid as exc:
            raise exceptions.AuthenticationFailed(exc.message, code=exc.code) from exc
        username = user.get_username()
        ip_address = client_ip(request)
        if retry_after := services.login_retry_after(username=username, ip_address=ip_address):
            raise TooManyLoginAttempts(wait=retry_after)
        if mfa.mfa_code_verify(user=user, code=serializer.validated_data["code"]) is None:
            services.login_failure_record(username=username, ip_address=ip_address, channel="api-2fa")
            raise exceptions.AuthenticationFailed("The code is not right (or was already used).", code="invalid_code")
        services.login_success_record(user=user, ip_address=ip_address, channel="api", second_factor=True)
        return _token_pair_response(services.token_pair_issue(user=user, second_factor=True))


class RefreshView(TokenEndpoint):
    """Rotates the refresh token: the one presented is blacklisted and cannot be used again."""

    @extend_schema(request=RefreshRequestSerializer, responses={200: TokenPairSerializer}, tags=["auth"])
    def post(self, request: Request) -> Response:
        serializer = RefreshRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            refresh = services.refresh_token_rotate(refresh=serializer.validated_data["refresh"])
        except services.TokenRefused as exc:
            raise InvalidToken(str(exc)) from exc
        return _token_pair_response(refresh)


class LogoutView(TokenEndpoint):
    """Blacklists the refresh token; the short-lived access token simply expires."""

    @extend_schema(request=RefreshRequestSerializer, responses={204: None}, tags=["auth"])
    def post(self, request: Request) -> Response:
        serializer = RefreshRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            services.refresh_token_revoke(refresh=serializer.validated_data["refresh"])
        except services.TokenRefused as exc:
            raise InvalidToken(str(exc)) from exc
        return Response(status=status.HTTP_204_NO_CONTENT)


class PasswordChangeView(APIView):
    """The caller changes their own password; every token of theirs (this one included) and every
    open stream stop working, so they log in again."""

    @extend_schema(request=PasswordChangeSerializer, responses={204: None}, tags=["auth"])
    def post(self, request: Request) -> Response:
        serializer = PasswordChangeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user_var.set(request.user.get_username())  # the audit's actor
        try:
            services.user_password_change(user=request.user, **serializer.validated_data)
        except DjangoValidationError as exc:
            raise exceptions.ValidationError(exc.message_dict) from exc
        return Response(status=status.HTTP_204_NO_CONTENT)


class OnboardView(APIView):
    permission_classes = [IsOperator]

    @extend_schema(request=OnboardRequestSerializer, responses={201: ClientSerializer}, tags=["clients"])
    def post(self, request: Request) -> Response:
        serializer = OnboardRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        broker, credentials = None, None
        if "broker" in data:
            broker = data["broker"]["broker"]
            try:
                credentials = credentials_validate(broker=broker, credentials=data["broker"]["credentials"])
            except exceptions.ValidationError as exc:
                raise exceptions.ValidationError({"broker": exc.detail}) from exc
        try:
            client = services.client_onboard(
                client_id=data["client_id"],
                name=data["name"],
                owner_username=data["owner"]["username"],
                owner_password=data["owner"]["password"],
                owner_email=data["owner"]["email"],
                actor=request.user.get_username() if request.user.is_authenticated else "admin-api-key",
                broker=broker,
                broker_credentials=credentials,
            )
        except services.OnboardingError as exc:
            raise exceptions.ValidationError(exc.errors) from exc
        return Response(ClientSerializer(client).data, status=status.HTTP_201_CREATED)


class MyClientSerializer(serializers.Serializer):
    client_id = serializers.CharField(source="client.client_id")
    name = serializers.CharField(source="client.name")
    role = serializers.ChoiceField(choices=[role.value for role in Membership.Role])


class MyClientsView(APIView):
    """The clients the caller belongs to, and the role on each (active clients only)."""

    @extend_schema(responses={200: MyClientSerializer(many=True)}, tags=["auth"])
    def get(self, request: Request) -> Response:
        return Response(MyClientSerializer(user_clients_list(user=request.user), many=True).data)


# --- two-factor authentication: the caller's own -----------------------------------------------


def _mfa_api_error(exc: mfa.MfaError) -> exceptions.APIException:
    if isinstance(exc, mfa.MfaInvalidCode):
        return exceptions.ValidationError({"code": [exc.message]}, code=exc.code)
    if isinstance(exc, mfa.MfaPolicyError):
        return MfaRequired(exc.message)
    error = exceptions.APIException(exc.message, code=exc.code)
    error.status_code = status.HTTP_409_CONFLICT
    return error


class MfaStatusView(APIView):
    @extend_schema(responses={200: MfaStatusSerializer}, tags=["auth"])
    def get(self, request: Request) -> Response:
        pending = mfa.mfa_device_get(user=request.user, confirmed=False) is not None
        return Response(MfaStatusSerializer({
            "enabled": mfa.mfa_enabled(user=request.user), "enrolment_pending": pending,
            "recovery_codes_left": mfa.mfa_recovery_codes_left(user=request.user),
            "this_login_used_second_factor": request_used_second_factor(request),
        }).data)


class MfaEnrolView(APIView):
    """A new TOTP secret for the caller, unconfirmed until POST /auth/2fa/confirm. Operators enrol
    with `manage.py mfa_enrol` while MFA_REQUIRED_FOR_STAFF (a password alone must not make one)."""

    @extend_schema(request=None, responses={201: MfaEnrolmentSerializer}, tags=["auth"])
    def post(self, request: Request) -> Response:
        if request.user.is_staff and settings.MFA_REQUIRED_FOR_STAFF:
            raise exceptions.PermissionDenied("Operators are enrolled by another operator (manage.py mfa_enrol).",
                                              code="mfa_enrol_by_operator")
        user_var.set(request.user.get_username())
        try:
            enrolment = mfa.mfa_device_enrol(user=request.user)
        except mfa.MfaError as exc:
            raise _mfa_api_error(exc) from exc
        body = {"secret": enrolment.secret, "otpauth_uri": enrolment.otpauth_uri, "confirmed": False}
        return Response(MfaEnrolmentSerializer(body).data, status=status.HTTP_201_CREATED)


class MfaConfirmView(APIView):
    """Confirm the enrolment with a code: logins take a second factor from now on. Answers ten
    single-use recovery codes, shown this once."""

    @extend_schema(request=MfaCodeSerializer, responses={200: MfaRecoveryCodesSerializer}, tags=["auth"])
    def post(self, request: Request) -> Response:
        serializer = MfaCodeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user_var.set(request.user.get_username())
        try:
            codes = mfa.mfa_device_confirm(user=request.user, code=serializer.validated_data["code"])
        except mfa.MfaError as exc:
            raise _mfa_api_error(exc) from exc
        return Response(MfaRecoveryCodesSerializer({"recovery_codes": codes}).data)


class MfaDisableView(APIView):
    """Turn two-factor authentication off, with a current code or a recovery code."""

    @extend_schema(request=MfaCodeSerializer, responses={204: None}, tags=["auth"])
    def post(self, request: Request) -> Response:
        serializer = MfaCodeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user_var.set(request.user.get_username())
        try:
            mfa.mfa_disable(user=request.user, code=serializer.validated_data["code"])
        except mfa.MfaError as exc:
            raise _mfa_api_error(exc) from exc
        return Response(status=status.HTTP_204_NO_CONTENT)


class ClientMfaPolicyView(ClientScopedAPIView):
    """Whether the client requires a second factor of everyone who reaches it (GET: any member;
    POST: the owner, audited; turning it on needs the owner's own login to have used one)."""

    @property
    def required_role(self) -> str:  # type: ignore[override]
        return Membership.Role.OWNER if self.request.method == "POST" else Membership.Role.VIEWER

    @extend_schema(responses={200: MfaPolicySerializer}, tags=["clients"])
    def get(self, request: Request, client_id: str) -> Response:
        return Response(MfaPolicySerializer({"required": self.client_access.client.mfa_required}).data)

    @extend_schema(request=MfaPolicySerializer, responses={200: MfaPolicySerializer}, tags=["clients"])
    def post(self, request: Request, client_id: str) -> Response:
        serializer = MfaPolicySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            client = mfa.client_mfa_policy_set(client=self.client_access.client,
                                               required=serializer.validated_data["required"], actor=request.user,
                                               actor_verified=request_used_second_factor(request))
        except mfa.MfaError as exc:
            raise _mfa_api_error(exc) from exc
        return Response(MfaPolicySerializer({"required": client.mfa_required}).data)
