"""The desk's pure geometry: the day's chart."""
from datetime import UTC, datetime, timedelta

from desk.presenters import BandSpan, FillMark, history_chart

START = datetime(2027, 2, 10, 14, 0, tzinfo=UTC)


def _chart(**overrides):
    times = [START + timedelta(minutes=m) for m in (0, 30, 60, 90)]
    arguments = {"start": START, "end": START + timedelta(hours=2), "times": times, "delta": [1.0, None, 3.0, 2.0],
                 "pnl": [0.0, -50.0, 25.0, 10.0], "bands": [BandSpan(START, 0.0, 2.0)], "max_net_delta": 5.0,
                 "max_daily_loss": 100.0, "fills": [FillMark(times[2], "BUY", 2, "bought 2"),
                                                    FillMark(times[3], "SELL", 1, "sold 1")]}
    return history_chart(**{**arguments, **overrides})


def test_both_panels_share_the_time_axis_and_an_unknown_value_breaks_the_line():
    chart = _chart()
    assert len(chart.delta.lines) == 2  # broken at the unknown point, not drawn through zero
    first_delta_x = float(chart.delta.lines[0]["points"].split()[0].split(",")[0])
    first_pnl_x = float(chart.pnl.lines[0]["points"].split()[0].split(",")[0])
    assert first_delta_x == first_pnl_x == chart.left
    assert [tick["label"] for tick in chart.x_ticks] == ["14:00", "14:30", "15:00", "15:30", "16:00"]


def test_band_limits_and_fills_are_drawn_or_said_off_scale():
    chart = _chart()
    assert chart.delta.band and [line["label"] for line in chart.delta.hlines if line["css"] == "limit"] == [
        "limit +5", "limit -5"]
    assert [m["css"] for m in chart.delta.markers] == ["buy", "sell"]
    far = _chart(max_net_delta=500.0, max_daily_loss=1_000_000.0)
    assert [line for line in far.delta.hlines if line["css"] == "limit"] == []
    assert far.delta.off_scale == ["net delta limit ±500 contracts (off the scale)"]
    assert far.pnl.off_scale == ["daily loss limit -1,000,000 USD (off the scale)"]


def test_every_coordinate_stays_inside_the_view_box():
    chart = _chart(delta=[1e6, -1e6, 0.0, 1.0], fills=[FillMark(START - timedelta(hours=1), "BUY", 1, "early")])
    for line in chart.delta.lines + chart.pnl.lines:
        for pair in line["points"].split():
            x, y = map(float, pair.split(","))
            assert chart.left <= x <= chart.width - chart.right and 0 <= y <= chart.delta.height
    assert chart.delta.markers[0]["x"] == chart.left  # clamped to the start


def test_an_empty_day_draws_nothing_and_does_not_fail():
    chart = _chart(times=[], delta=[], pnl=[], bands=[], fills=[])
    assert chart.delta.lines == [] and chart.pnl.lines == [] and chart.delta.band == ""


def test_delta_models_read_as_traders_name_them() -> None:
    from desk.templatetags.desk import delta_model

    assert [delta_model(name) for name in ("sticky_strike", "sticky_moneyness", "minimum_variance")] == [
        "sticky-strike", "sticky-moneyness", "minimum-variance"]
