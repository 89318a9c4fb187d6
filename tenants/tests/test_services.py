import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django_tenants.utils import schema_context, schema_exists

from agents.models import AgentConfig
from tenants.models import Client, Membership
from tenants.services import (
    OnboardingError,
    TokenRefused,
    client_onboard,
    refresh_token_revoke,
    refresh_token_rotate,
)

GOOD_PASSWORD = "a-long-and-unusual-passphrase"


def _onboard(client_id: str = "gamma", username: str = "gamma-owner", password: str = GOOD_PASSWORD) -> Client:
    return client_onboard(
        client_id=client_id, name="Gamma", owner_username=username, owner_password=password,
        owner_email="o@gamma.example", actor="tests",
    )


def test_onboarding_creates_a_migrated_schema_and_an_owner(db):
    client = _onboard()
    assert client.schema_name == "client_gamma"
    assert schema_exists("client_gamma")
    with schema_context("client_gamma"):
        assert AgentConfig.objects.count() == 0  # the table exists, cloned from the template
    membership = Membership.objects.get(client=client)
    assert membership.role == Membership.Role.OWNER
    assert membership.user.check_password(GOOD_PASSWORD)
    assert connection.schema_name == "public"


def test_hyphenated_client_id_maps_to_a_valid_schema(db):
    assert _onboard(client_id="north-star", username="ns-owner").schema_name == "client_north_star"


def test_a_row_in_one_client_schema_is_invisible_from_another(alpha, beta):
    with schema_context(alpha.client.schema_name):
        AgentConfig.objects.create(mode=AgentConfig.Mode.AUTONOMOUS, parameters={"marker": "alpha"})
        assert AgentConfig.objects.filter(parameters__marker="alpha").count() == 1
    with schema_context(beta.client.schema_name):
        assert AgentConfig.objects.filter(parameters__marker="alpha").count() == 0


@pytest.mark.parametrize(
    ("client_id", "username", "password", "field"),
    [
        ("alpha", "new-owner", GOOD_PASSWORD, "client_id"),  # taken
        ("Bad_Id", "new-owner", GOOD_PASSWORD, "client_id"),  # not a slug
        ("9lives", "new-owner", GOOD_PASSWORD, "client_id"),  # must start with a letter
        ("onboard", "new-owner", GOOD_PASSWORD, "client_id"),  # reserved: it is a route
        ("delta", "new-owner", "password1", "owner"),  # weak password
        ("delta", "alpha-owner", GOOD_PASSWORD, "owner"),  # username taken
    ],
)
def test_invalid_onboarding_is_refused_and_leaves_nothing_behind(alpha, client_id, username, password, field):
    clients_before = Client.objects.count()
    users_before = get_user_model().objects.count()
    with pytest.raises(OnboardingError) as refused:
        _onboard(client_id=client_id, username=username, password=password)
    assert field in refused.value.errors
    assert Client.objects.count() == clients_before
    assert get_user_model().objects.count() == users_before
    if client_id == "delta":
        assert not schema_exists("client_delta")


def test_a_failure_after_the_schema_exists_rolls_everything_back(db, monkeypatch):
    # The owner is created after the schema; make that step fail for real with a duplicate key
    # inserted behind the validation's back.
    from django.contrib.auth import get_user_model

    User = get_user_model()
    original = User.objects.create_user

    def create_user_then_collide(**kwargs):
        original(username=kwargs["username"], password="x")
        return original(**kwargs)

    monkeypatch.setattr(User.objects, "create_user", create_user_then_collide)
    with pytest.raises(OnboardingError):
        _onboard(client_id="epsilon", username="eps-owner")
    assert not Client.objects.filter(client_id="epsilon").exists()
    assert not schema_exists("client_epsilon")
    assert not User.objects.filter(username="eps-owner").exists()


def test_a_refresh_token_rotates_once_and_a_revoked_one_never(alpha):
    from rest_framework_simplejwt.tokens import RefreshToken

    first = str(RefreshToken.for_user(alpha.trader))
    rotated = refresh_token_rotate(refresh=first)
    assert str(rotated) != first
    with pytest.raises(TokenRefused):
        refresh_token_rotate(refresh=first)
    refresh_token_revoke(refresh=str(rotated))
    with pytest.raises(TokenRefused):
        refresh_token_rotate(refresh=str(rotated))
