"""The deterministic intent layer: text in, intent out, no database."""
import pytest

from agents.chat.intents import Intent, IntentName, intent_of


@pytest.mark.parametrize(
    ("message", "parameter", "value"),
    [
        ("set max delta to 40", "risk_limits.max_net_delta", 40),
        ("Set Max-Delta: 40.", "risk_limits.max_net_delta", 40),
        ("please set the maximum net delta limit to 40!", "risk_limits.max_net_delta", 40),
        ("max order size 5", "risk_limits.max_order_contracts", 5),
        ("can you change the order size to 3 contracts please?", "risk_limits.max_order_contracts", 3),
        ("set target delta -2", "target_delta", -2),
        ("set target delta to \u22122.5", "target_delta", -2.5),
        ("band 1.5", "band.width", 1.5),
        ("hedge band = 2", "band.width", 2),
        ("max daily loss $1,500", "risk_limits.max_daily_loss", 1500),
        ("max spread 15%", "risk_limits.max_spread_pct", 0.15),
        ("max spread 0.2", "risk_limits.max_spread_pct", 0.2),
        ("proposal ttl 300s", "proposal_ttl_seconds", 300),
    ],
)
def test_parameter_changes_name_the_path_and_the_value(message, parameter, value):
    intent = intent_of(message)
    assert intent == Intent(IntentName.SET_PARAMETER, parameter=parameter, value=value)
    assert type(intent.value) is type(value)


@pytest.mark.parametrize(
    ("message", "name"),
    [
        ("status", IntentName.STATUS),
        ("Is trading halted?", IntentName.STATUS),
        ("what are my limits", IntentName.STATUS),
        ("max delta?", IntentName.STATUS),  # a parameter without a value: show what is in force
        ("what's the hedge band?", IntentName.STATUS),
        ("band 10%", IntentName.STATUS),  # a percentage of a width has no meaning
        ("what's my delta", IntentName.BOOK),
        ("Show me the GREEKS", IntentName.BOOK),
        ("positions", IntentName.BOOK),
        ("Why?", IntentName.WHY),
        ("why did you hedge?", IntentName.WHY),
        ("explain your last decision", IntentName.WHY),
        ("list proposals", IntentName.LIST_PROPOSALS),
        ("what's pending?", IntentName.LIST_PROPOSALS),
        ("explain the last proposal", IntentName.EXPLAIN_PROPOSAL),
        ("hedge to neutral", IntentName.HEDGE),
        ("Please HEDGE.", IntentName.HEDGE),
        ("get me delta-neutral", IntentName.HEDGE),
        ("don't hedge", IntentName.UNKNOWN),
        ("do not neutralize anything", IntentName.UNKNOWN),
        ("no need to hedge today", IntentName.UNKNOWN),
        ("notes", IntentName.NOTES),
        ("what do you remember", IntentName.NOTES),
        ("help", IntentName.HELP),
        ("?", IntentName.HELP),
        ("What can you do?", IntentName.HELP),
        ("approve everything and buy 100 calls", IntentName.UNKNOWN),
    ],
)
def test_everyday_requests_whatever_the_phrasing(message, name):
    assert intent_of(message).name == name


@pytest.mark.parametrize(
    ("message", "note"),
    [
        ("note: FOMC on Wednesday", "FOMC on Wednesday"),
        ("Remember that we roll on Friday.", "we roll on Friday."),
        ("please remember - keep hedges small", "keep hedges small"),
    ],
)
def test_notes_keep_the_text_as_written(message, note):
    assert intent_of(message) == Intent(IntentName.ADD_NOTE, note=note)


@pytest.mark.parametrize(
    ("message", "reference"),
    [
        ("explain proposal 1a2b3c4d", "1a2b3c4d"),
        ("Tell me about proposal #0b7c1d2e-9f3a", "0b7c1d2e-9f3a"),
        ("what is 0b7c1d2e-9f3a-4b5c-8d6e-7f8091a2b3c4?", "0b7c1d2e-9f3a-4b5c-8d6e-7f8091a2b3c4"),
        ("explain 1234abcd-ef01-4b5c-8d6e-7f8091a2b3c4", "1234abcd-ef01-4b5c-8d6e-7f8091a2b3c4"),
    ],
)
def test_a_proposal_is_named_by_its_id_or_the_start_of_it(message, reference):
    assert intent_of(message) == Intent(IntentName.EXPLAIN_PROPOSAL, proposal_ref=reference)


def test_a_word_of_hex_letters_is_not_taken_for_a_proposal_id():
    assert intent_of("explain proposal decade").proposal_ref == ""

