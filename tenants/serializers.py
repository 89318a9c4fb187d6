from __future__ import annotations

from rest_framework import serializers

from brokers.registry import broker_choices
from tenants.models import CLIENT_ID_MAX_LENGTH, Client
from tenants.services import client_id_validate, owner_validate


class OwnerSerializer(serializers.Serializer):
    username = serializers.RegexField(r"^[\w.@+-]+$", max_length=150)
    password = serializers.CharField(write_only=True, max_length=128, trim_whitespace=False)
    email = serializers.EmailField()


class BrokerChoiceSerializer(serializers.Serializer):
    broker = serializers.ChoiceField(choices=broker_choices())
    credentials = serializers.DictField(required=False, default=dict)


class OnboardRequestSerializer(serializers.Serializer):
    client_id = serializers.CharField(max_length=CLIENT_ID_MAX_LENGTH)
    name = serializers.CharField(max_length=200)
    owner = OwnerSerializer()
    broker = BrokerChoiceSerializer(required=False)

    def validate_client_id(self, value: str) -> str:
        if errors := client_id_validate(client_id=value):
            raise serializers.ValidationError(errors)
        return value

    def validate_owner(self, value: dict) -> dict:
        if errors := owner_validate(username=value["username"], password=value["password"], email=value["email"]):
            raise serializers.ValidationError(errors)
        return value


class ClientSerializer(serializers.ModelSerializer):
    class Meta:
        model = Client
        fields = ["client_id", "name", "status", "created_at"]


class LoginRequestSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=128, trim_whitespace=False)


class TokenPairSerializer(serializers.Serializer):
    access = serializers.CharField()
    refresh = serializers.CharField()
    token_type = serializers.CharField(default="Bearer")
    expires_in = serializers.IntegerField(help_text="Seconds until the access token expires.")


class RefreshRequestSerializer(serializers.Serializer):
    refresh = serializers.CharField()


class PasswordChangeSerializer(serializers.Serializer):
    current_password = serializers.CharField(max_length=128, trim_whitespace=False, write_only=True)
    new_password = serializers.CharField(max_length=128, trim_whitespace=False, write_only=True)


class MfaChallengeSerializer(serializers.Serializer):
    """The answer to a right password when the user has two-factor authentication: no tokens yet."""

    mfa_required = serializers.BooleanField(default=True)
    mfa_token = serializers.CharField(help_text="Signed, short-lived; send it with the code to /auth/login/2fa.")
    expires_in = serializers.IntegerField(help_text="Seconds the mfa_token stays valid.")


class MfaLoginRequestSerializer(serializers.Serializer):
    mfa_token = serializers.CharField(max_length=1000)
    code = serializers.CharField(max_length=64, help_text="The authenticator's 6 digits, or a recovery code.")


class MfaCodeSerializer(serializers.Serializer):
    code = serializers.CharField(max_length=64, help_text="The authenticator's 6 digits, or a recovery code.")


class MfaEnrolmentSerializer(serializers.Serializer):
    secret = serializers.CharField(help_text="Base32 TOTP secret (SHA-1, 6 digits, 30 s).")
    otpauth_uri = serializers.CharField(help_text="otpauth:// URI for an authenticator app (as a QR code).")
    confirmed = serializers.BooleanField(default=False)


class MfaRecoveryCodesSerializer(serializers.Serializer):
    recovery_codes = serializers.ListField(child=serializers.CharField(),
                                          help_text="Single-use codes, shown this once: keep them safe.")


class MfaStatusSerializer(serializers.Serializer):
    enabled = serializers.BooleanField()
    enrolment_pending = serializers.BooleanField()
    recovery_codes_left = serializers.IntegerField()
    this_login_used_second_factor = serializers.BooleanField()


class MfaPolicySerializer(serializers.Serializer):
    required = serializers.BooleanField()
