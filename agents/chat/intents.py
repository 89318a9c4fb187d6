"""What a trader's chat message asks for, without a language model.

Pure and deterministic: the same text always gives the same Intent. Matching is tolerant of case,
punctuation, "maximum"/"max", hyphens and politeness ("please", "can you"), and strict where a
mistake would matter: a parameter change needs a known parameter and a number, a negated request
("don't hedge") is not a request, and a question about a hedge ("why did you hedge?") asks why.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class IntentName(StrEnum):
    HELP = "help"
    STATUS = "status"
    BOOK = "book"
    WHY = "why"
    LIST_PROPOSALS = "list_proposals"
    EXPLAIN_PROPOSAL = "explain_proposal"
    HEDGE = "hedge"
    SET_PARAMETER = "set_parameter"
    ADD_NOTE = "add_note"
    NOTES = "notes"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Intent:
    name: IntentName
    parameter: str = ""  # SET_PARAMETER: the dotted path in the agent's parameters
    value: int | float | None = None  # SET_PARAMETER: a whole number stays an int
    note: str = ""  # ADD_NOTE: the text to remember, as written
    proposal_ref: str = ""  # EXPLAIN_PROPOSAL: a proposal id or its first characters; "" for the latest


@dataclass(frozen=True, slots=True)
class ParameterAlias:
    words: str
    path: str
    fraction: bool = False  # stored as a fraction, so "10%" means 0.10


# Longest phrases first, so "max net delta" is not read as "max delta" plus noise.
PARAMETER_ALIASES: tuple[ParameterAlias, ...] = tuple(sorted(
    (
        ParameterAlias("max net delta", "risk_limits.max_net_delta"),
        ParameterAlias("max delta", "risk_limits.max_net_delta"),
        ParameterAlias("net delta limit", "risk_limits.max_net_delta"),
        ParameterAlias("delta limit", "risk_limits.max_net_delta"),
        ParameterAlias("max order size", "risk_limits.max_order_contracts"),
        ParameterAlias("max order contracts", "risk_limits.max_order_contracts"),
        ParameterAlias("max order", "risk_limits.max_order_contracts"),
        ParameterAlias("order size limit", "risk_limits.max_order_contracts"),
        ParameterAlias("order size", "risk_limits.max_order_contracts"),
        ParameterAlias("max leg size", "risk_limits.max_leg_contracts"),
        ParameterAlias("max leg contracts", "risk_limits.max_leg_contracts"),
        ParameterAlias("max daily loss", "risk_limits.max_daily_loss"),
        ParameterAlias("daily loss limit", "risk_limits.max_daily_loss"),
        ParameterAlias("max open legs", "risk_limits.max_open_legs"),
        ParameterAlias("open legs limit", "risk_limits.max_open_legs"),
        ParameterAlias("max spread", "risk_limits.max_spread_pct", fraction=True),
        ParameterAlias("target delta", "target_delta"),
        ParameterAlias("delta target", "target_delta"),
        ParameterAlias("hedge band", "band.width"),
        ParameterAlias("band width", "band.width"),
        ParameterAlias("band", "band.width"),
        ParameterAlias("proposal ttl", "proposal_ttl_seconds"),
        ParameterAlias("cycle interval", "cycle_interval_seconds"),
    ),
    key=lambda alias: -len(alias.words),
))
_ALIAS_BY_WORDS = {alias.words: alias for alias in PARAMETER_ALIASES}

_NOTE = re.compile(
    r"^\s*(?:please\s+)?(?:note|remember|memo)\b(?:\s+that\b)?\s*[:,\-]?\s*(?P<text>\S.*)$",
    re.IGNORECASE | re.DOTALL,
)
_NUMBER = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\.\d+"
_SET_PARAMETER = re.compile(
    r"^(?:(?:please|pls|can you|could you|would you|i want to|i'd like to|let's)\s+)?"
    r"(?:(?:set|change|make|update|put|move|raise|lower|increase|decrease|reduce|adjust)\s+)?"
    r"(?:(?:the|my|our)\s+)?"
    r"(?P<name>" + "|".join(re.escape(alias.words) for alias in PARAMETER_ALIASES) + r")"
    r"(?:\s+limit)?\s*(?:(?:to|=|:|at|of|be)\s*)?\$?\s*(?P<value>" + _NUMBER + r")"
    r"\s*(?P<unit>%|percent|contracts?|lots?|usd|dollars|seconds?|secs?|s)?"
    r"(?:\s+please)?$"
)
_PROPOSAL_ID = re.compile(
    r"\b(?P<ref>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32})\b"
)
# A prefix needs a digit, so that an ordinary word made of the letters a-f is not read as an id.
_PROPOSAL_PREFIX = re.compile(r"\bproposal\s+(?:id\s+)?#?(?P<ref>(?=[0-9a-f-]*\d)[0-9a-f][0-9a-f-]{5,35})\b")
_EXPLAIN_PROPOSAL = re.compile(
    r"\b(?:explain|describe|details?|about|what(?:'s| is| was)|show|tell me)\b.*\bproposal\b"
)
_WHY = re.compile(
    r"\bwhy\b|\breason(?:s|ing)?\b|\b(?:last|latest|recent) decision|\bdecision journal\b"
    r"|\bwhat did you (?:do|decide)\b|\bexplain (?:the |your )?(?:last |latest )?decision"
)
_LIST_PROPOSALS = re.compile(r"\bproposals\b|\bpending\b|\bproposed\b|\bwhat(?:'s| is) (?:waiting|open)\b")
_NOTES = re.compile(r"\bnotes\b|\bwhat did i tell you\b|\bwhat do you remember\b|\bmemory\b")
_MENTIONS_PARAMETER = re.compile(
    r"\b(?:" + "|".join(re.escape(alias.words) for alias in PARAMETER_ALIASES) + r")\b"
)
_NEGATED_HEDGE = re.compile(
    r"\b(?:don't|dont|do not|never|stop|no|without)\s+(?:\w+\s+){0,2}(?:hedg|neutrali[sz])"
)
_HEDGE = re.compile(
    r"\bhedg(?:e|ing)\b|\bneutrali[sz]e\b|\b(?:delta )?neutral\b|\bflatten\b|\brebalance\b"
    r"|\bzero (?:the )?delta\b"
)
_BOOK = re.compile(
    r"\bbook\b|\bpositions?\b|\bgreeks?\b|\bdelta\b|\bgamma\b|\bvega\b|\btheta\b|\bexposure\b"
    r"|\bp&l\b|\bpnl\b|\bholdings?\b|\bportfolio\b"
)
_STATUS = re.compile(
    r"\bstatus\b|\bmode\b|\bstate\b|\bhalt(?:ed)?\b|\bbreaker\b|\blimits?\b|\bhealth\b|\brunning\b"
    r"|\bhow are (?:you|things)\b|\bbroker\b|\bconnect(?:ed|ion)?\b"
)
_HELP = re.compile(
    r"^(?:|help|h|hi|hello|hey|commands|menu|options"
    r"|what can you do|what can i (?:ask|say)|how do i use (?:this|you))$"
)


def normalized(text: str) -> str:
    """Lower case, one kind of dash and apostrophe, single spaces, no trailing punctuation,
    "maximum"/"max." as "max", and hyphens or underscores inside words as spaces."""
    text = text.lower()
    text = re.sub(r"[\u2212\u2013\u2014]", "-", text)
    text = text.replace("\u2019", "'")
    text = re.sub(r"(?<=[a-z])[-_](?=[a-z])", " ", text)
    text = re.sub(r"\bmaximum\b|\bmax\.", "max", text)
    text = re.sub(r",(?=\s)", " ", text)
    text = re.sub(r"\s+", " ", text)
    return text.strip(" .!?;")


def _number(text: str) -> int | float:
    plain = text.replace(",", "")
    return float(plain) if "." in plain else int(plain)


def _parameter_intent(text: str) -> Intent | None:
    match = _SET_PARAMETER.match(text)
    if match is None:
        return None
    alias = _ALIAS_BY_WORDS[match["name"]]
    value = _number(match["value"])
    if match["unit"] in ("%", "percent"):
        if not alias.fraction:
            return None  # "band 10%" has no meaning the agent could act on
        value = value / 100
    return Intent(IntentName.SET_PARAMETER, parameter=alias.path, value=value)


def _proposal_ref(text: str) -> str | None:
    match = _PROPOSAL_ID.search(text) or _PROPOSAL_PREFIX.search(text)
    return match["ref"] if match else None


def intent_of(message: str) -> Intent:
    """The intent of one chat message."""
    note = _NOTE.match(message)
    if note:
        return Intent(IntentName.ADD_NOTE, note=note["text"].strip())
    text = normalized(message)
    if parameter := _parameter_intent(text):
        return parameter
    if (ref := _proposal_ref(message.lower())) is not None:  # before hyphens in words became spaces
        return Intent(IntentName.EXPLAIN_PROPOSAL, proposal_ref=ref)
    if _EXPLAIN_PROPOSAL.search(text):
        return Intent(IntentName.EXPLAIN_PROPOSAL)
    if _WHY.search(text):
        return Intent(IntentName.WHY)
    if _LIST_PROPOSALS.search(text):
        return Intent(IntentName.LIST_PROPOSALS)
    if _NOTES.search(text):
        return Intent(IntentName.NOTES)
    if _MENTIONS_PARAMETER.search(text):
        return Intent(IntentName.STATUS)  # a parameter named without a new value: show what is in force
    if _NEGATED_HEDGE.search(text):
        return Intent(IntentName.UNKNOWN)  # "don't hedge" must never be taken for "hedge"
    if _HEDGE.search(text):
        return Intent(IntentName.HEDGE)
    if _BOOK.search(text):
        return Intent(IntentName.BOOK)
    if _STATUS.search(text):
        return Intent(IntentName.STATUS)
    if _HELP.match(text):
        return Intent(IntentName.HELP)
    return Intent(IntentName.UNKNOWN)
