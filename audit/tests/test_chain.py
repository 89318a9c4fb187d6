"""Canonical JSON and the hash chain, as pure functions."""
import hashlib
import json
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from enum import Enum, StrEnum
from uuid import UUID

import pytest
from hypothesis import given

from audit.chain import GENESIS_HASH, ChainRow, StoredRow, canonical_json, chain_verify, row_hash
from audit.tests.conftest import json_values

WHEN = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)


class Side(StrEnum):
    BUY = "buy"


class Level(Enum):
    HIGH = 3


def test_keys_are_sorted_and_there_is_no_whitespace():
    value = {"b": 1, "a": [True, None, "x y"], "A": {}}
    assert canonical_json(value) == '{"A":{},"a":[true,null,"x y"],"b":1}'


def test_non_ascii_is_escaped_so_the_bytes_are_ascii():
    assert canonical_json({"name": "Zürich ✓"}) == '{"name":"Z\\u00fcrich \\u2713"}'


def test_decimal_is_its_string_and_keeps_its_scale():
    value = {"price": Decimal("1.50"), "big": Decimal("1E+3")}
    assert canonical_json(value) == '{"big":"1E+3","price":"1.50"}'


def test_datetimes_are_utc_with_microseconds_and_z():
    eastern = datetime(2026, 1, 1, 22, 4, 5, tzinfo=timezone(timedelta(hours=-5)))
    assert canonical_json([eastern, WHEN]) == '["2026-01-02T03:04:05.000000Z","2026-01-02T03:04:05.000006Z"]'


def test_dates_uuids_enums_and_tuples():
    value = {"d": date(2026, 3, 20), "u": UUID(int=1), "s": Side.BUY, "l": Level.HIGH, "t": (1, 2)}
    assert canonical_json(value) == (
        '{"d":"2026-03-20","l":3,"s":"buy","t":[1,2],"u":"00000000-0000-0000-0000-000000000001"}'
    )


@pytest.mark.parametrize(
    ("number", "text"),
    [(1.0, "1"), (-0.0, "0"), (1e20, "100000000000000000000"), (0.1, "0.1"), (1.5e-07, "1.5e-07"),
     (2.5, "2.5"), (2**70, "1180591620717411303424"), (-3, "-3")],
)
def test_numbers(number, text):
    assert canonical_json(number) == text


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (datetime(2026, 1, 1), ValueError),
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        ("a\x00b", ValueError),
        ("\ud800", ValueError),
        ({1: "x"}, TypeError),
        ({"s": {1, 2}}, TypeError),
        (b"bytes", TypeError),
        (object(), TypeError),
    ],
)
def test_values_without_a_canonical_form_are_refused(value, error):
    with pytest.raises(error):
        canonical_json(value)


@given(json_values)
def test_the_canonical_text_reads_back_to_the_same_canonical_text(value):
    text = canonical_json(value)
    assert canonical_json(json.loads(text)) == text
    assert text.isascii()


def _row(sequence=1, payload=None, **changes):
    fields = dict(client_id="alpha", sequence=sequence, actor_type="user", actor_id="alpha-owner",
                  kind="auth.login", payload=payload if payload is not None else {"ip": "10.0.0.1"},
                  created_at=WHEN)
    return ChainRow(**{**fields, **changes})


def test_the_hash_is_sha256_of_the_previous_hash_and_the_documented_row_text():
    expected_text = (
        '{"actor_id":"alpha-owner","actor_type":"user","client_id":"alpha",'
        '"created_at":"2026-01-02T03:04:05.000006Z","kind":"auth.login",'
        '"payload":{"ip":"10.0.0.1"},"sequence":1}'
    )
    assert _row().canonical() == expected_text
    expected_hash = hashlib.sha256((GENESIS_HASH + expected_text).encode()).hexdigest()
    assert row_hash(GENESIS_HASH, _row()) == expected_hash
    assert row_hash("f" * 64, _row()) != row_hash(GENESIS_HASH, _row())


def _chain(rows):
    stored, previous = [], GENESIS_HASH
    for row_id, row in enumerate(rows, start=100):
        previous = row_hash(previous, row)
        stored.append(StoredRow(row_id=row_id, row=row, stored_hash=previous))
    return stored


def test_an_intact_chain_verifies():
    result = chain_verify("alpha", _chain([_row(n) for n in (1, 2, 3)]))
    assert result.intact and result.rows_checked == 3


def test_an_empty_chain_is_intact():
    assert chain_verify("alpha", []).intact


def test_an_edited_row_is_named():
    stored = _chain([_row(n) for n in (1, 2, 3)])
    edited = _row(2, payload={"ip": "10.6.6.6"})
    stored[1] = StoredRow(row_id=101, row=edited, stored_hash=stored[1].stored_hash)
    result = chain_verify("alpha", stored)
    assert (result.first_break.sequence, result.first_break.row_id) == (2, 101)
    assert "hash" in result.first_break.problem


def test_a_missing_row_is_named_by_the_row_after_the_gap():
    stored = _chain([_row(n) for n in (1, 2, 3)])
    result = chain_verify("alpha", [stored[0], stored[2]])
    assert (result.first_break.sequence, result.first_break.row_id) == (3, 102)
    assert "sequence 2 is missing" in result.first_break.problem


def test_a_missing_first_row_is_detected():
    stored = _chain([_row(n) for n in (1, 2)])
    assert chain_verify("alpha", stored[1:]).first_break.sequence == 2


def test_rows_out_of_order_are_detected():
    stored = _chain([_row(n) for n in (1, 2, 3)])
    result = chain_verify("alpha", [stored[0], stored[2], stored[1]])
    assert result.first_break.row_id == 102
