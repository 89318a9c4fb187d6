"""Trades in words: the deterministic parse (no database), and questions back for what is unclear."""
from datetime import date

import pytest

from agents.chat.intents import IntentName, intent_of
from agents.trade_requests import LegSpec, RequestKind, TradeRequest


@pytest.mark.parametrize(
    ("message", "legs"),
    [
        ("sell 1 ES 6000 call", (LegSpec("SELL", 1, "ES", "FOP", strike=6000.0, right="C"),)),
        ("Please sell one ES 6000 call.", (LegSpec("SELL", 1, "ES", "FOP", strike=6000.0, right="C"),)),
        ("sell 2 lots of ES 6000 puts", (LegSpec("SELL", 2, "ES", "FOP", strike=6000.0, right="P"),)),
        ("buy 3 contracts ES 5950p", (LegSpec("BUY", 3, "ES", "FOP", strike=5950.0, right="P"),)),
        ("buy 2 ES futures", (LegSpec("BUY", 2, "ES", "FUT"),)),
        ("buy 2 ES", (LegSpec("BUY", 2, "ES", "FUT"),)),
        ("go short 1 NQ future", (LegSpec("SELL", 1, "NQ", "FUT"),)),
        ("sell 1 ES 2026-03-20 6000 call",
         (LegSpec("SELL", 1, "ES", "FOP", expiry=date(2026, 3, 20), strike=6000.0, right="C"),)),
        ("buy 1 es 6000c and sell 1 es 6100c", (LegSpec("BUY", 1, "ES", "FOP", strike=6000.0, right="C"),
                                                LegSpec("SELL", 1, "ES", "FOP", strike=6100.0, right="C"))),
        ("sell 1 6000 call", (LegSpec("SELL", 1, "", "FOP", strike=6000.0, right="C"),)),
    ],
)
def test_explicit_legs(message, legs):
    intent = intent_of(message)
    assert intent.name == IntentName.TRADE
    assert intent.trade == TradeRequest(kind=RequestKind.LEGS, legs=legs)


@pytest.mark.parametrize(
    ("message", "request_"),
    [
        ("open a short strangle, 1 lot", TradeRequest(RequestKind.OPEN_STRUCTURE, structure="short_strangle", units=1)),
        ("open 2 iron condors", TradeRequest(RequestKind.OPEN_STRUCTURE, structure="iron_condor", units=2)),
        ("sell a strangle 3 lots", TradeRequest(RequestKind.OPEN_STRUCTURE, structure="short_strangle", units=3)),
        ("buy a straddle", TradeRequest(RequestKind.OPEN_STRUCTURE, structure="long_straddle", units=1)),
        ("close the strangle", TradeRequest(RequestKind.CLOSE_STRUCTURE, structure="strangle")),
        ("close my short strangle", TradeRequest(RequestKind.CLOSE_STRUCTURE, structure="short_strangle")),
        ("close the structure", TradeRequest(RequestKind.CLOSE_STRUCTURE)),
        ("roll", TradeRequest(RequestKind.ROLL)),
        ("roll the strangle forward", TradeRequest(RequestKind.ROLL)),
        ("close everything", TradeRequest(RequestKind.CLOSE_ALL)),
        ("please close all positions", TradeRequest(RequestKind.CLOSE_ALL)),
        ("flatten the book", TradeRequest(RequestKind.CLOSE_ALL)),
    ],
)
def test_structures_roll_and_close_everything(message, request_):
    intent = intent_of(message)
    assert intent.name == IntentName.TRADE and intent.trade == request_


@pytest.mark.parametrize(
    ("message", "asked"),
    [
        ("sell some calls", "How many calls"),
        ("buy ES", "How many ES contracts"),
        ("buy 3 calls", "the quantity or the strike"),
        ("sell 1 ES 6000", "call or a put"),
        ("buy an ES call", "At which strike"),
        ("buy 1 ES call", "the quantity or the strike"),
        ("open a strangle", "A short or a long strangle"),
        ("buy 2 xyz futures", 'the product "xyz"'),
        ("sell 1 ES 6000 call at 12.5", "limit price myself"),
        ("buy 2 ES futures and execute now", "start each leg with buy or sell"),
        ("sell 1 ES 6000 call future", "both a future and an option"),
    ],
)
def test_unclear_requests_get_a_question_not_a_guess(message, asked):
    intent = intent_of(message)
    assert intent.name == IntentName.CLARIFY and intent.trade is None
    assert asked in intent.question


@pytest.mark.parametrize("message", ["hedge to neutral", "flatten", "don't buy anything", "why did you sell",
                                     "set max delta to 40", "what is pending"])
def test_what_is_not_a_trade_stays_what_it_was(message):
    assert intent_of(message).name not in (IntentName.TRADE, IntentName.CLARIFY)
