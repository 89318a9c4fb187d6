from django.contrib.auth import get_user_model
from django_tenants.utils import schema_exists

from tenants.models import Client, Membership

NEW_CLIENT = {
    "client_id": "zeta",
    "name": "Zeta Partners",
    "owner_username": "zeta-owner",
    "owner_email": "o@zeta.example",
    "owner_password": "a-long-and-unusual-passphrase",
}


def _staff_browser(client, django_user_model):
    admin = django_user_model.objects.create_superuser("root-op", "r@example.com", "pw-for-the-console-1")
    client.force_login(admin)
    return client


def test_operator_creates_a_client_through_the_onboarding_service(client, django_user_model, db):
    browser = _staff_browser(client, django_user_model)
    response = browser.post("/admin/tenants/client/add/", NEW_CLIENT)
    assert response.status_code == 302, response.content.decode()[:2000]
    created = Client.objects.get(client_id="zeta")
    assert schema_exists(created.schema_name)
    assert Membership.objects.get(client=created).user.username == "zeta-owner"


def test_the_console_shows_field_errors_and_creates_nothing(client, django_user_model, alpha):
    browser = _staff_browser(client, django_user_model)
    response = browser.post("/admin/tenants/client/add/", {**NEW_CLIENT, "client_id": "alpha", "owner_password": "123"})
    assert response.status_code == 200
    assert response.context["adminform"].form.errors.keys() >= {"client_id", "owner_password"}
    assert not get_user_model().objects.filter(username="zeta-owner").exists()


def test_console_pages_render(client, django_user_model, alpha):
    browser = _staff_browser(client, django_user_model)
    for url in ("/admin/", "/admin/tenants/client/", f"/admin/tenants/client/{alpha.client.pk}/change/",
                "/admin/tenants/membership/", "/admin/auth/user/"):
        assert browser.get(url).status_code == 200, url


def test_non_staff_cannot_use_the_console(client, alpha):
    client.force_login(alpha.owner)
    assert client.get("/admin/tenants/client/").status_code == 302
