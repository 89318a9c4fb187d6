"""The operator console shows the trail and changes nothing."""
import pytest

from audit.models import AuditEvent
from audit.rls import settings_read
from audit.tests.conftest import record

CHANGELIST = "/admin/audit/auditevent/"


@pytest.fixture
def browser(client, django_user_model, db):
    admin = django_user_model.objects.create_superuser("audit-op", "a@example.com", "pw-for-the-console-1")
    client.force_login(admin)
    return client


@pytest.fixture
def rows(db, fresh_client_id):
    client_id = fresh_client_id()
    return client_id, [
        record(client_id, kind="risk.decision", payload={"client_order_id": "ord-needle-1"}),
        record(client_id, kind="agent.mode_changed", actor_type="user", actor_id="owner-x"),
        record("", kind="halt.emergency", actor_type="operator", actor_id="op"),
    ]


def _listed(response):
    return {event.pk for event in response.context["cl"].result_list}


def test_the_changelist_lists_every_client_and_filters(browser, rows):
    client_id, (decision, mode_change, halt) = rows
    response = browser.get(CHANGELIST)
    assert response.status_code == 200
    assert {decision.pk, mode_change.pk, halt.pk} <= _listed(response)
    assert _listed(browser.get(CHANGELIST, {"client_id": client_id})) == {decision.pk, mode_change.pk}
    by_kind = browser.get(CHANGELIST, {"client_id": client_id, "kind": "agent.mode_changed"})
    assert _listed(by_kind) == {mode_change.pk}
    by_actor = browser.get(CHANGELIST, {"client_id": client_id, "actor_type": "user"})
    assert _listed(by_actor) == {mode_change.pk}
    day = decision.created_at
    dated = browser.get(CHANGELIST, {"created_at__year": day.year, "created_at__month": day.month,
                                     "created_at__day": day.day})
    assert decision.pk in _listed(dated)


def test_search_finds_text_in_the_payload(browser, rows):
    _, (decision, *_) = rows
    assert _listed(browser.get(CHANGELIST, {"q": "needle"})) == {decision.pk}


def test_a_row_can_be_viewed_but_not_changed(browser, rows):
    _, (decision, *_) = rows
    url = f"{CHANGELIST}{decision.pk}/change/"
    assert browser.get(url).status_code == 200
    assert browser.post(url, {"kind": "auth.login"}).status_code == 403
    assert AuditEvent.objects.get(pk=decision.pk).kind == "risk.decision"


def test_nothing_can_be_added_or_deleted(browser, rows):
    _, (decision, *_) = rows
    assert browser.get(f"{CHANGELIST}add/").status_code == 403
    assert browser.post(f"{CHANGELIST}{decision.pk}/delete/", {"post": "yes"}).status_code == 403
    bulk_delete = {"action": "delete_selected", "_selected_action": [decision.pk], "post": "yes"}
    assert browser.post(CHANGELIST, bulk_delete).status_code == 200  # "no action selected"
    assert AuditEvent.objects.filter(pk=decision.pk).exists()


def test_the_console_puts_the_connection_settings_back(browser, rows):
    before = settings_read()
    browser.get(CHANGELIST)
    assert settings_read() == before
