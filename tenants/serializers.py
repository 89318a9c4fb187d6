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
