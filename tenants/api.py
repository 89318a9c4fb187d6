"""Thin views: identity (login, refresh, logout) and client onboarding."""
from __future__ import annotations

from django.conf import settings
from django.contrib.auth import authenticate
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.exceptions import InvalidToken
from rest_framework_simplejwt.tokens import RefreshToken

from brokers.registry import credentials_validate
from tenants import services
from tenants.models import Membership
from tenants.permissions import IsOperator
from tenants.selectors import user_clients_list
from tenants.serializers import (
    ClientSerializer,
    LoginRequestSerializer,
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


class LoginView(TokenEndpoint):
    @extend_schema(
        request=LoginRequestSerializer,
        responses={200: TokenPairSerializer, 401: OpenApiResponse(description="Bad credentials"),
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
        services.login_success_record(user=user, ip_address=ip_address, channel="api")
        return _token_pair_response(services.token_pair_issue(user=user))


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
