"""Reproducibility: numbers as JSON (unknown is null) and the digest of a decision's inputs."""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import fields
from datetime import UTC, date
from decimal import Decimal
from typing import Any

from agents.parameters import parameters_to_json
from agents.policy.model import POLICY_VERSION, PolicyInputs, QuotedInstrument


def _number(value: float | None) -> float | None:
    """JSON has no NaN: an unknown number is null in metrics and rationales."""
    return value if value is not None and math.isfinite(value) else None


def _canonical(value: Any) -> Any:
    """Plain JSON for the digest; a non-finite float becomes its text, so unknown != missing."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {str(key): _canonical(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(item) for item in value]
    if isinstance(value, (date, Decimal)):
        return str(value)
    return value


def _quoted(quoted: QuotedInstrument) -> dict[str, Any]:
    risk = quoted.risk
    return {"instrument": risk.instrument.key, "bid": quoted.bid, "ask": quoted.ask, "mark": risk.mark,
            "delta": risk.delta, "gamma": risk.gamma}


def _inputs_digest(inputs: PolicyInputs) -> str:
    """sha256 of the canonical JSON of what the decision reads (and the policy version)."""
    underlying = inputs.parameters.underlying
    structure = inputs.structure
    payload = {
        "policy_version": POLICY_VERSION,
        "now": inputs.now.astimezone(UTC).isoformat(),
        "rate": inputs.rate,
        "parameters": parameters_to_json(inputs.parameters),
        "limits": {"max_order_contracts": inputs.limits.max_order_contracts,
                   "max_leg_contracts": inputs.limits.max_leg_contracts},
        "net": [{"symbol": entry.symbol, "delta": entry.greeks.delta, "gamma": entry.greeks.gamma,
                 "delta_model": entry.delta_model}
                for entry in inputs.book.net if entry.symbol == underlying],
        "legs": sorted(
            ({"instrument": leg.risk.instrument.key, "quantity": leg.quantity, "mark": leg.risk.mark}
             for leg in inputs.book.legs if leg.risk.instrument.symbol == underlying),
            key=lambda leg: leg["instrument"],
        ),
        "hedge": _quoted(inputs.hedge) if inputs.hedge is not None else None,
        "expiring_futures": sorted((_quoted(quoted) for quoted in inputs.expiring_futures),
                                   key=lambda q: q["instrument"]),
        "chain": sorted((_quoted(quoted) for quoted in inputs.chain), key=lambda q: q["instrument"]),
        "working": sorted(
            ({"order": leg.leg.client_order_id, "instrument": leg.leg.instrument.key, "quantity": leg.leg.quantity,
              "delta": leg.risk.delta} for leg in inputs.working.legs),
            key=lambda leg: (leg["order"], leg["instrument"]),
        ),
        "structure": (
            {f.name: getattr(structure, f.name) for f in fields(structure)} | {
                "legs": sorted(structure.legs), "opened_at": structure.opened_at.isoformat()}
            if structure is not None else None
        ),
    }
    text = json.dumps(_canonical(payload), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()
