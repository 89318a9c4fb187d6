"""What a trader's chat message asks for, without a language model.

Pure and deterministic: the same text always gives the same Intent. Matching is tolerant of case,
punctuation, "maximum"/"max", hyphens and politeness ("please", "can you"), and strict where a
mistake would matter: a parameter change needs a known parameter and a number, a negated request
("don't hedge") is not a request, and a question about a hedge ("why did you hedge?") asks why.

A trade ("sell 1 ES 6000 call", "buy 2 ES futures", "open a short strangle, 1 lot", "close the
strangle", "roll", "close everything") is a TRADE with its TradeRequest, to be drafted as a pending
proposal; one that is not clear enough to draft without guessing (no quantity, "some", a strike
without call or put, a price) is a CLARIFY with the question to ask back. Neither ever approves or
executes anything.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from agents.trade_requests import LegSpec, RequestKind, TradeRequest
from brokers.products import PRODUCTS


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
    TRADE = "trade"
    CLARIFY = "clarify"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Intent:
    name: IntentName
    parameter: str = ""  # SET_PARAMETER: the dotted path in the agent's parameters
    value: int | float | None = None  # SET_PARAMETER: a whole number stays an int
    note: str = ""  # ADD_NOTE: the text to remember, as written
    proposal_ref: str = ""  # EXPLAIN_PROPOSAL: a proposal id or its first characters; "" for the latest
    trade: TradeRequest | None = None  # TRADE: what to draft
    question: str = ""  # CLARIFY: what to ask back


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
    if (trade := _trade_intent(text)) is not None:
        return trade
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


# ---------------------------------------------------------------------------------------------
# Trades
# ---------------------------------------------------------------------------------------------

_POLITE = (r"^(?:(?:please|pls|can you|could you|would you|i want to|i'd like to|i would like to|let's"
           r"|go ahead and)\s+)*")
_CLOSE_ALL = re.compile(
    _POLITE + r"(?:close|flatten|exit|liquidate|unwind)\s+(?:out\s+)?(?:of\s+)?"
    r"(?:everything|it all|all|all (?:my |our |the )?positions|(?:my |our |the )?(?:whole |entire )?(?:book|portfolio))"
    r"(?:\s+please)?$"
)
_ROLL = re.compile(
    _POLITE + r"roll(?:\s+(?:it|(?:the|my|our)\s+(?:structure|position|options?|strangle|straddle|condor|iron condor"
    r"|futures?|hedge)))?(?:\s+(?:forward|out|over))?(?:\s+please)?$"
)
_STRUCTURES = r"short strangle|long strangle|strangle|short straddle|long straddle|straddle|iron condor|condor"
_CLOSE_STRUCTURE = re.compile(
    _POLITE + r"close\s+(?:out\s+)?(?:the\s+|my\s+|our\s+)?(?P<kind>" + _STRUCTURES + r"|structure)(?:\s+please)?$"
)
_OPEN_STRUCTURE = re.compile(
    _POLITE + r"(?P<verb>open|sell|buy|put on|do|go)\s+(?:(?:a|an|one|(?P<n1>\d+))\s+)?(?:new\s+)?(?P<kind>"
    + _STRUCTURES + r")s?(?:\s+(?:of\s+)?(?P<n2>\d+|one|a)\s*(?:lots?|units?|contracts?))?(?:\s+please)?$"
)
_TRADE_START = re.compile(_POLITE + r"(?P<side>buy|sell|short|go long|go short)\b(?P<rest>.*)$")
_VAGUE = {"some", "few", "several", "many", "more", "bunch", "couple"}
_FILLER = {"of", "the", "lots", "lot", "contracts", "contract", "x", "strike", "option", "options", "please", "more"}
_ONE = {"a", "an", "one"}
_RIGHTS = {"call": "C", "calls": "C", "c": "C", "put": "P", "puts": "P", "p": "P"}
_FUTURE_WORDS = {"future", "futures", "fut", "futs"}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_STRIKE_RIGHT = re.compile(r"^(?P<strike>\d+(?:\.\d+)?)(?P<right>c|p)$")
_NUMBER_TOKEN = re.compile(r"^\d+(?:\.\d+)?$")


def _clarify(question: str) -> Intent:
    return Intent(IntentName.CLARIFY, question=question)


def _structure_kind(words: str, verb: str) -> str | None:
    words = words.replace(" ", "_")
    if words in ("condor", "iron_condor"):
        return "iron_condor"
    if words.startswith(("short_", "long_")):
        return words
    if verb == "sell":
        return f"short_{words}"
    if verb == "buy":
        return f"long_{words}"
    return None


def _leg_of(part: str) -> LegSpec | str:
    """One leg from "buy 2 es futures" or "sell 1 es 6000 call"; a question when unclear."""
    match = _TRADE_START.match(part)
    if match is None:
        return f"I read \"{part}\" as part of a trade but not as a leg: start each leg with buy or sell."
    side = "BUY" if match["side"] in ("buy", "go long") else "SELL"
    quantity: int | None = None
    vague = False
    symbol, strike, right, expiry, future, numbers = "", None, None, None, False, []
    tokens = match["rest"].split()
    index = 0
    while index < len(tokens):
        token = tokens[index]
        upper = token.upper()
        if token == "at" and index + 1 < len(tokens) and _NUMBER_TOKEN.match(tokens[index + 1].lstrip("$")):
            return ("I set the limit price myself, from the quotes (the far touch plus a small protection); "
                    "say the trade without a price.")
        if token in _VAGUE or token == "a" and index + 1 < len(tokens) and tokens[index + 1] in _VAGUE:
            vague = True
        elif token in _ONE and quantity is None and not numbers:
            quantity = 1
        elif upper in PRODUCTS:
            symbol = upper
        elif token in _RIGHTS:
            right = _RIGHTS[token]
        elif token in _FUTURE_WORDS:
            future = True
        elif _DATE.match(token):
            expiry = token
        elif (combined := _STRIKE_RIGHT.match(token)) is not None:
            strike, right = float(combined["strike"]), combined["right"].upper()
        elif _NUMBER_TOKEN.match(token):
            numbers.append(token)
        elif token in _FILLER or token in _ONE:
            pass
        elif re.fullmatch(r"[a-z0-9]{1,4}", token) and not symbol:
            return (f"I do not know the product \"{token}\". Which one? (for example ES, NQ, CL, GC; known: "
                    f"{', '.join(sorted(PRODUCTS))})")
        else:
            return f"I did not understand \"{token}\" in \"{part}\". Say it as, for example, \"sell 1 ES 6000 call\"."
        index += 1
    # Numbers: the quantity comes first, then the strike; one number alone with a call or put could be either.
    if quantity is None and strike is None and right and len(numbers) == 1:
        kind = "call" if right == "C" else "put"
        return (f"Is {numbers[0]} the quantity or the strike? Say both, for example \"{side.lower()} 1 "
                f"{symbol or 'ES'} {numbers[0]} {kind}\".")
    for number in numbers:
        is_whole = "." not in number
        if quantity is None and is_whole:
            quantity = int(number)
        elif strike is None:
            strike = float(number)
        else:
            return f"Too many numbers in \"{part}\": give the quantity and, for an option, one strike."
    what = f"{symbol + ' ' if symbol else ''}{'calls' if right == 'C' else 'puts' if right == 'P' else 'contracts'}"
    if vague or quantity is None:
        return f"How many {what} do you want to {side.lower()}?" + (
            "" if future or strike is not None else " And the future, or which strike for an option?")
    if quantity < 1:
        return "The quantity must be at least 1 contract."
    if future and (strike is not None or right):
        return f"\"{part}\" names both a future and an option: which one?"
    if right and strike is None:
        return f"At which strike do you want to {side.lower()} the {symbol} {'call' if right == 'C' else 'put'}?"
    if strike is not None and not right:
        return f"Is the {strike:g} strike a call or a put?"
    try:
        when = date.fromisoformat(expiry) if expiry else None
    except ValueError:
        return f"\"{expiry}\" is not a date: give the expiry as YYYY-MM-DD."
    return LegSpec(side=side, quantity=quantity, symbol=symbol, sec_type="FOP" if right else "FUT",
                   expiry=when, strike=strike, right=right)


def _trade_intent(text: str) -> Intent | None:
    """A trade request, a question about one, or None when the text is not a trade at all."""
    if _CLOSE_ALL.match(text):
        return Intent(IntentName.TRADE, trade=TradeRequest(kind=RequestKind.CLOSE_ALL))
    if _ROLL.match(text):
        return Intent(IntentName.TRADE, trade=TradeRequest(kind=RequestKind.ROLL))
    if close := _CLOSE_STRUCTURE.match(text):
        kind = "" if close["kind"] == "structure" else close["kind"].replace(" ", "_")
        return Intent(IntentName.TRADE, trade=TradeRequest(kind=RequestKind.CLOSE_STRUCTURE, structure=kind))
    if opened := _OPEN_STRUCTURE.match(text):
        kind = _structure_kind(opened["kind"], opened["verb"])
        if kind is None:
            return _clarify(f"A short or a long {opened['kind']}?")
        counts = {int(n) if n.isdigit() else 1 for n in (opened["n1"], opened["n2"]) if n}
        if len(counts) > 1:
            return _clarify("How many lots: " + " or ".join(str(n) for n in sorted(counts)) + "?")
        units = counts.pop() if counts else 1
        if units < 1:
            return _clarify("How many lots? At least one.")
        return Intent(IntentName.TRADE, trade=TradeRequest(kind=RequestKind.OPEN_STRUCTURE, structure=kind,
                                                           units=units))
    if not _TRADE_START.match(text):
        return None
    legs = []
    for part in re.split(r"\s*(?:;|\band\b|\bplus\b)\s*", text):
        leg = _leg_of(part.strip())
        if isinstance(leg, str):
            return _clarify(leg)
        legs.append(leg)
    return Intent(IntentName.TRADE, trade=TradeRequest(kind=RequestKind.LEGS, legs=tuple(legs)))
