"""The operator console's halt page."""
from django_tenants.utils import tenant_context

from risk.models import RiskStateRecord
from tenants.models import PlatformControl
from tradingplatform.testing import audit_events

PAGE = "/admin/tenants/platformcontrol/"


def _operator(client, django_user_model):
    operator = django_user_model.objects.create_user("console-op", password="pw-console-1234", is_staff=True,
                                                     is_superuser=True)
    client.force_login(operator)
    return client


def test_the_page_shows_the_platform_and_every_client(client, django_user_model, alpha, beta):
    page = _operator(client, django_user_model).get(PAGE)
    assert page.status_code == 200
    text = page.content.decode()
    assert "HALT EVERY CLIENT" in text and "alpha" in text and "beta" in text


def test_halting_and_lifting_everything_needs_a_reason_and_is_audited(client, django_user_model, alpha):
    browser = _operator(client, django_user_model)
    browser.post(PAGE, {"scope": "platform", "halted": "true", "reason": ""})
    assert not PlatformControl.objects.filter(emergency_halted=True).exists()

    browser.post(PAGE, {"scope": "platform", "halted": "true", "reason": "venue outage"})
    assert PlatformControl.objects.get().emergency_halted
    assert audit_events(client_id="alpha", kind="halt.emergency")[-1].actor_id == "console-op"

    browser.post(PAGE, {"scope": "platform", "halted": "false", "reason": "venue back"})
    assert not PlatformControl.objects.get().emergency_halted


def test_halting_one_client_from_the_console(client, django_user_model, alpha, beta):
    browser = _operator(client, django_user_model)
    browser.post(PAGE, {"scope": "client", "client_id": "alpha", "halted": "true", "reason": "risk review"})
    with tenant_context(alpha.client):
        assert RiskStateRecord.objects.get().operator_halted
    with tenant_context(beta.client):
        assert not RiskStateRecord.objects.filter(operator_halted=True).exists()


def test_non_staff_cannot_reach_the_page(client, alpha):
    client.force_login(alpha.owner)
    assert client.get(PAGE).status_code == 302
    assert client.post(PAGE, {"scope": "platform", "halted": "true", "reason": "x"}).status_code == 302
    assert not PlatformControl.objects.filter(emergency_halted=True).exists()
