"""The book's history: written at every book sync, read by range and step, bounded by compaction,
served at GET /clients/{id}/risk/history."""
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.test import override_settings
from django_tenants.utils import tenant_context

from agents.tests.books import buy_futures
from brokers.services import broker_session
from risk import book_history, selectors, services
from risk.models import BookHistoryPoint
from risk.tasks import book_history_compact_all_task, book_history_compact_task
from tradingplatform.testing import bearer

T0 = datetime(2027, 2, 10, 15, 0, tzinfo=UTC)


def _point(at, underlying="ES", delta=1.0, **fields):
    return BookHistoryPoint.objects.create(at=at, underlying=underlying, net_delta=delta, **fields)


def test_a_book_sync_records_a_point_per_underlying_and_one_for_the_book(alpha):
    buy_futures(alpha, 3, client_order_id="history-seed")
    with tenant_context(alpha.client):
        BookHistoryPoint.objects.all().delete()  # the order's own syncs wrote some
        with broker_session() as broker:
            snapshot = services.book_sync(client=alpha.client, broker=broker)
        rows = {row.underlying: row for row in BookHistoryPoint.objects.all()}
    assert set(rows) == {"ES", BookHistoryPoint.BOOK}
    es, book = rows["ES"], rows[BookHistoryPoint.BOOK]
    assert es.at == book.at == snapshot.valuation.as_of
    assert es.net_delta == book.net_delta == pytest.approx(3.0)
    assert es.open_legs == book.open_legs == 1
    assert book.unrealized_pnl == es.unrealized_pnl is not None
    # Today's P&L on the book row, as the daily-loss rule counts it (a commission was paid).
    assert book.realized_pnl_today is not None and book.realized_pnl_today <= 0
    assert book.daily_pnl is not None and es.daily_pnl is None and es.realized_pnl_today is None


def test_a_scheduled_sync_records_history_too(alpha):
    assert services.client_book_sync(client=alpha.client)
    with tenant_context(alpha.client):
        book = BookHistoryPoint.objects.get(underlying=BookHistoryPoint.BOOK)
    assert book.open_legs == 0 and book.net_delta == 0.0 and book.daily_pnl == Decimal("0.00")


def test_an_unknown_greek_is_stored_as_unknown_not_zero(alpha):
    from risk.book import BookValuation, UnderlyingNet
    from risk.greeks import NetGreeks

    valuation = BookValuation(legs=(), net=(UnderlyingNet("ES", NetGreeks(float("nan"), 0.1, 2.0, -3.0)),),
                              unrealized_pnl=None, as_of=T0)
    with tenant_context(alpha.client):
        book_history.book_history_record(valuation=valuation, realized_today=Decimal("5"), unrealized_today=None)
        rows = {row.underlying: row for row in BookHistoryPoint.objects.all()}
    assert rows["ES"].net_delta is None and rows["ES"].net_gamma == pytest.approx(0.1)
    assert rows[""].net_delta is None and rows[""].daily_pnl is None and rows[""].realized_pnl_today == 5


def test_the_selector_returns_the_last_point_of_each_step_oldest_first(alpha):
    with tenant_context(alpha.client):
        for second, delta in [(0, 1.0), (20, 2.0), (59, 3.0), (60, 4.0), (130, 5.0), (179, 6.0)]:
            _point(T0 + timedelta(seconds=second), delta=delta)
            _point(T0 + timedelta(seconds=second), underlying="", delta=delta * 10)
        _point(T0 + timedelta(seconds=180), delta=7.0)  # at the end: excluded
        es = selectors.book_history_list(start=T0, end=T0 + timedelta(seconds=180), step_seconds=60,
                                         underlying="ES")
        everything = selectors.book_history_list(start=T0, end=T0 + timedelta(seconds=180), step_seconds=60)
        fine = selectors.book_history_list(start=T0 + timedelta(seconds=20), end=T0 + timedelta(seconds=61),
                                           step_seconds=1, underlying="")
    assert [p.net_delta for p in es] == [3.0, 4.0, 6.0]
    assert [p.at for p in es] == sorted(p.at for p in es)
    assert len(everything) == 6 and {p.underlying for p in everything} == {"ES", ""}
    assert [p.net_delta for p in fine] == [20.0, 30.0, 40.0]


def test_the_selector_only_reads(alpha, django_assert_max_num_queries):
    with tenant_context(alpha.client):
        _point(T0)
        with django_assert_max_num_queries(1) as queries:
            selectors.book_history_list(start=T0, end=T0 + timedelta(days=1), step_seconds=300)
    assert queries.captured_queries[0]["sql"].lstrip().upper().startswith("SELECT")


@override_settings(BOOK_HISTORY_RETENTION_DAYS=30, BOOK_HISTORY_COMPACT_AFTER_HOURS=24,
                   BOOK_HISTORY_COMPACT_STEP_MINUTES=5)
def test_compaction_thins_points_older_than_a_day_and_drops_those_past_the_retention(alpha):
    now = T0
    with tenant_context(alpha.client):
        old = now - timedelta(days=31)
        _point(old)  # past the retention
        yesterday = now - timedelta(days=2)
        for minute in range(0, 15):  # one a minute for 15 minutes two days ago: 3 steps of 5 minutes
            _point(yesterday + timedelta(minutes=minute), delta=float(minute))
            _point(yesterday + timedelta(minutes=minute), underlying="", delta=float(minute))
        for minute in range(0, 10):  # within the last day: kept as they are
            _point(now - timedelta(minutes=minute))
        result = book_history.book_history_compact(now=now)
        kept_old = list(BookHistoryPoint.objects.filter(at__lt=now - timedelta(days=1), underlying="ES"))
        assert result.expired == 1 and result.thinned == 2 * (15 - 3)
        assert [p.net_delta for p in kept_old] == [4.0, 9.0, 14.0]  # the last of each 5 minutes
        assert BookHistoryPoint.objects.filter(at__gte=now - timedelta(days=1)).count() == 10
        assert BookHistoryPoint.objects.filter(underlying="", at__lt=now - timedelta(days=1)).count() == 3
        again = book_history.book_history_compact(now=now)
    assert (again.thinned, again.expired) == (0, 0)  # idempotent


def test_compaction_runs_on_beat_per_client_in_its_own_schema(alpha, beta, eager_tasks, settings):
    assert settings.CELERY_BEAT_SCHEDULE["compact-book-history"]["task"] == "risk.book_history_compact_all"
    with tenant_context(alpha.client):
        _point(datetime.now(UTC) - timedelta(days=settings.BOOK_HISTORY_RETENTION_DAYS + 1))
    queued = book_history_compact_all_task.apply().get()
    assert {"alpha", "beta", "race"} <= set(queued)
    with tenant_context(alpha.client):
        assert not BookHistoryPoint.objects.exists()
    with tenant_context(beta.client), pytest.raises(RuntimeError, match="ran in schema client_beta"):
        book_history_compact_task.apply(args=["alpha"]).get()


# ---------------------------------------------------------------------------------------------
# GET /clients/{id}/risk/history


def test_a_viewer_reads_the_history_by_range_and_step(api, alpha):
    with tenant_context(alpha.client):
        for second in (0, 30, 90):
            _point(T0 + timedelta(seconds=second), delta=float(second), unrealized_pnl=Decimal("12.50"))
            _point(T0 + timedelta(seconds=second), underlying="", delta=float(second), daily_pnl=Decimal("-3.10"))
    query = {"from": "2027-02-10T15:00:00Z", "to": "2027-02-10T15:02:00Z", "step": 60}
    response = api.get("/clients/alpha/risk/history", query, **bearer(alpha.viewer))
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["step"] == 60 and body["from"].startswith("2027-02-10T15:00:00")
    assert [(p["underlying"], p["net_delta"]) for p in body["points"]] == [
        ("book", 30.0), ("ES", 30.0), ("book", 90.0), ("ES", 90.0)]
    assert body["points"][0]["daily_pnl"] == "-3.10" and body["points"][1]["unrealized_pnl"] == "12.50"
    only_book = api.get("/clients/alpha/risk/history", {**query, "underlying": "book"}, **bearer(alpha.viewer))
    assert {p["underlying"] for p in only_book.json()["points"]} == {"book"}


def test_without_parameters_the_last_day_in_about_500_steps(api, alpha):
    response = api.get("/clients/alpha/risk/history", **bearer(alpha.viewer))
    assert response.status_code == 200
    body = response.json()
    assert body["step"] == 173  # ceil(86,400 / 500)
    assert body["points"] == []


@pytest.mark.parametrize(("query", "field"), [
    ({"from": "yesterday"}, "from"),
    ({"to": "2027-02-10T25:00:00Z"}, "to"),
    ({"step": "0"}, "step"),
    ({"step": "abc"}, "step"),
    ({"step": "86401"}, "step"),
    ({"from": "2027-02-10T15:00:00Z", "to": "2027-02-10T14:00:00Z"}, "from"),
    ({"from": "2027-02-01T00:00:00Z", "to": "2027-02-10T00:00:00Z", "step": "60"}, "step"),
    ({"underlying": "X" * 17}, "underlying"),
])
def test_bad_parameters_are_a_400_with_field_errors(api, alpha, query, field):
    response = api.get("/clients/alpha/risk/history", query, **bearer(alpha.viewer))
    assert response.status_code == 400
    assert field in response.json()["errors"], response.json()


def test_the_history_is_the_client_s_own_and_members_only(api, alpha, beta):
    with tenant_context(beta.client):
        _point(T0)
    query = {"from": "2027-02-10T14:00:00Z", "to": "2027-02-10T16:00:00Z"}
    assert api.get("/clients/alpha/risk/history", query, **bearer(alpha.viewer)).json()["points"] == []
    assert api.get("/clients/beta/risk/history", query, **bearer(alpha.viewer)).status_code == 404
    assert api.get("/clients/alpha/risk/history", query).status_code == 401


def test_the_history_is_typed_in_the_openapi_schema(api, db):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    operation = schema["paths"]["/clients/{client_id}/risk/history"]["get"]
    assert {p["name"] for p in operation["parameters"]} >= {"client_id", "from", "to", "step", "underlying"}
    reference = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    component = schema["components"]["schemas"][reference.rsplit("/", 1)[1]]
    assert set(component["properties"]) == {"client_id", "from", "to", "step", "points"}
