"""The hash chain: the exact bytes an audit row is hashed from, and how each client's rows chain.

Canonical JSON, the one text a row and its payload are hashed (and stored) as:

- objects with keys sorted by code point, no whitespace anywhere (`{"a":1,"b":[true,null]}`);
- strings JSON-escaped with every non-ASCII character as `\\uXXXX`, so the bytes are ASCII;
- `Decimal` as its string (`"1.50"`), `datetime` as ISO 8601 UTC with microseconds and `Z`
  (`"2026-01-02T03:04:05.000006Z"`; naive datetimes are refused), `date` as `"YYYY-MM-DD"`,
  `UUID` as its string, an `Enum` as its value, tuples as arrays;
- integers in decimal; a float as its shortest round-trip form (`0.1`, `1.5e-07`), except that a
  float with an integral value is written as that integer (`1.0` -> `1`, `1e+20` ->
  `100000000000000000000`). PostgreSQL's jsonb keeps numbers as exact decimals and gives `1e+20`
  back as an integer, so this is what makes the text recomputed from a stored row identical to the
  text hashed when it was written. NaN and infinities are refused (jsonb cannot hold them), as are
  strings with NUL characters or unpaired surrogates.

A row's hash is `sha256(previous_hash + canonical_json(row))` in lowercase hex, where the row is
the object `{actor_id, actor_type, client_id, created_at, kind, payload, sequence}` and
`previous_hash` is the hash of the same client's previous row, or 64 zeros for its first row.
Sequences run 1, 2, 3, ... per client, so a deleted row shows as a gap and an edited or moved
row as a hash that no longer matches.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

GENESIS_HASH = "0" * 64


def canonical_json(value: Any) -> str:
    """`value` as canonical JSON (see the module docstring). Raises TypeError for a type JSON cannot
    represent unambiguously (sets, bytes, arbitrary objects, non-string keys) and ValueError for a
    value PostgreSQL's jsonb cannot store."""
    parts: list[str] = []
    _emit(value, parts)
    return "".join(parts)


def _emit(value: Any, parts: list[str]) -> None:
    # Order matters: bool is an int, datetime is a date, a StrEnum is both an Enum and a str.
    if value is None:
        parts.append("null")
    elif value is True or value is False:
        parts.append("true" if value else "false")
    elif isinstance(value, Enum):
        _emit(value.value, parts)
    elif isinstance(value, str):
        parts.append(_string(value))
    elif isinstance(value, int):
        parts.append(str(int(value)))
    elif isinstance(value, float):
        parts.append(_float(value))
    elif isinstance(value, Decimal):
        parts.append(_string(str(value)))
    elif isinstance(value, datetime):
        parts.append(_string(_timestamp(value)))
    elif isinstance(value, date):
        parts.append(_string(value.isoformat()))
    elif isinstance(value, UUID):
        parts.append(_string(str(value)))
    elif isinstance(value, Mapping):
        _emit_object(value, parts)
    elif isinstance(value, (list, tuple)):
        parts.append("[")
        for index, item in enumerate(value):
            if index:
                parts.append(",")
            _emit(item, parts)
        parts.append("]")
    else:
        raise TypeError(f"{type(value).__name__} has no canonical JSON form")


def _emit_object(value: Mapping, parts: list[str]) -> None:
    keys = []
    for key in value:
        if not isinstance(key, str):
            raise TypeError(f"object keys must be strings, not {type(key).__name__}")
        keys.append(key)
    parts.append("{")
    for index, key in enumerate(sorted(keys)):
        if index:
            parts.append(",")
        parts.append(_string(key))
        parts.append(":")
        _emit(value[key], parts)
    parts.append("}")


def _string(value: str) -> str:
    if "\x00" in value:
        raise ValueError("strings may not contain NUL characters (PostgreSQL jsonb cannot store them)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("strings may not contain unpaired surrogates") from exc
    return json.dumps(str.__str__(value))


def _float(value: float) -> str:
    if not math.isfinite(value):
        raise ValueError("NaN and infinite numbers have no JSON form")
    text = repr(value)
    exact = Decimal(text)
    if exact == exact.to_integral_value():
        return str(int(exact))
    return text


def _timestamp(value: datetime) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("naive datetimes are ambiguous; pass an aware datetime")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


@dataclass(frozen=True, slots=True)
class ChainRow:
    """The fields of an audit row that its hash covers."""

    client_id: str
    sequence: int
    actor_type: str
    actor_id: str
    kind: str
    payload: Mapping[str, Any]
    created_at: datetime

    def canonical(self) -> str:
        return canonical_json(
            {
                "actor_id": self.actor_id,
                "actor_type": self.actor_type,
                "client_id": self.client_id,
                "created_at": self.created_at,
                "kind": self.kind,
                "payload": self.payload,
                "sequence": self.sequence,
            }
        )


def row_hash(previous_hash: str, row: ChainRow) -> str:
    return hashlib.sha256((previous_hash + row.canonical()).encode("ascii")).hexdigest()


@dataclass(frozen=True, slots=True)
class StoredRow:
    """An audit row as read back: its database id, the hashed fields and the hash stored with it."""

    row_id: int
    row: ChainRow
    stored_hash: str


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """The first row that does not fit its client's chain."""

    sequence: int
    row_id: int
    problem: str


@dataclass(frozen=True, slots=True)
class ChainVerification:
    client_id: str
    rows_checked: int
    first_break: ChainBreak | None

    @property
    def intact(self) -> bool:
        return self.first_break is None


def chain_verify(client_id: str, rows: Iterable[StoredRow]) -> ChainVerification:
    """Recompute one client's chain from its rows in sequence order; stop at the first break.

    A gap in the sequence names the row after the missing one; a stored hash that differs from the
    recomputed one names the row whose contents (or position) changed.
    """
    previous_hash = GENESIS_HASH
    checked = 0
    for stored in rows:
        checked += 1
        sequence = stored.row.sequence
        problem = None
        if sequence > checked:
            problem = f"sequence {checked} is missing (deleted row?); found {sequence} next"
        elif sequence < checked:
            problem = f"sequence {sequence} is out of order; expected {checked}"
        elif row_hash(previous_hash, stored.row) != stored.stored_hash:
            problem = "stored hash does not match the row's contents (edited or moved row, or edited hash)"
        if problem is not None:
            return ChainVerification(client_id, checked, ChainBreak(sequence, stored.row_id, problem))
        previous_hash = stored.stored_hash
    return ChainVerification(client_id, checked, None)
