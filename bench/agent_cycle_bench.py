"""Agent cycles per second at 1, 10 and 100 clients on the simulated market.

Two sections, both run from the repository root:

- `python -m bench.agent_cycle_bench` (about 2 minutes, one core, no database): the cycle's own
  work for N clients, round by round. A round is what one scheduler tick costs when every client
  is due: one `SimulatedMarket.quotes` call for every instrument any client needs, the greeks,
  then `agents.policy.decide` per client. Measured twice: with the greeks batched across clients
  (`risk.book.value_books` plus one pass over the shared hedge futures and option chains) and
  without (`value_book` and the hedge and chain greeks per client, as `agents.services` does
  today); both must give the same decisions.
- `python -m tradingplatform.devstack exec -- python -m bench.agent_cycle_bench --service`:
  the full service cycle `agents.services.cycle_run` on the mock broker and real PostgreSQL, one
  cycle after another for 1 and for 10 clients (`bench-agent-01` ... `bench-agent-10`, created
  once in the development database; their audit rows stay: the trail is append-only), then a
  cProfile of the cycle.

Figures and the machine they came from are recorded in bench/README.md under "Agent cycle".
"""
from __future__ import annotations

import cProfile
import io
import os
import pstats
import random
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from itertools import count as counter

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradingplatform.settings")
import django  # noqa: E402

django.setup()  # the service section's imports need it; the pure rounds never touch the database

from django.core.management import call_command  # noqa: E402
from django_tenants.utils import tenant_context  # noqa: E402

from agents import services as agent_services  # noqa: E402
from agents.models import AgentConfig, AgentDecision, Proposal  # noqa: E402
from agents.parameters import AgentParameters, StructureRules  # noqa: E402
from agents.policy import PolicyDecision, PolicyInputs, QuotedInstrument, decide  # noqa: E402
from bench.governor_bench import Timing, machine, report, time_calls  # noqa: E402
from bench.pretrade_bench import BENCH_LIMITS  # noqa: E402
from brokers.domain import Instrument, OrderLeg, OrderRequest, Position, Quote  # noqa: E402
from brokers.services import broker_session  # noqa: E402
from brokers.simulator import SimClock, SimConfig, SimulatedMarket  # noqa: E402
from risk import services as risk  # noqa: E402
from risk.book import BookValuation, InstrumentRisk, instruments_risk, value_book, value_books  # noqa: E402
from risk.governor import RiskLimits  # noqa: E402
from tenants.models import Client  # noqa: E402
from tenants.services import client_onboard  # noqa: E402

START = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # a Tuesday, US morning
CYCLE_SECONDS = 60  # the agent's default cycle interval: every round sees new prices
RATE = 0.04  # the platform's default RISK_FREE_RATE
CLIENT_COUNTS = (1, 10, 100)
ROUNDS = {1: (1000, 50), 10: (300, 20), 100: (60, 5)}  # measured rounds, warm-up rounds
LIMITS = RiskLimits()


@dataclass(frozen=True, slots=True)
class BenchClient:
    name: str
    positions: tuple[Position, ...]
    parameters: AgentParameters


@dataclass(frozen=True, slots=True)
class Desk:
    """What the clients trade besides their books: per underlying, the hedge future and the option
    chain the policy picks structures from (the front future's, inside the structure's DTE window,
    as `agents.services` asks the broker for it)."""

    hedges: dict[str, Instrument]
    chains: dict[str, tuple[Instrument, ...]]


def desk_of(market: SimulatedMarket) -> Desk:
    rules = StructureRules()
    today = market.now().date()
    hedges = {symbol: market.listed_futures(symbol)[0] for symbol in ("ES", "NQ")}
    chains = {
        symbol: tuple(option for option in market.option_chain(future)
                      if rules.dte_min <= (option.expiry - today).days <= rules.dte_max)
        for symbol, future in hedges.items()
    }
    return Desk(hedges=hedges, chains=chains)


def clients_of(market: SimulatedMarket, count: int) -> list[BenchClient]:
    """`count` different books, the same ones on every run: a few ES and NQ futures and 6 to 20
    option legs from the first two futures' chains. Every second client keeps NQ delta-neutral,
    the others ES; every third one also keeps a short strangle on (none is held yet, so the
    policy reads the chain)."""
    futures = {symbol: market.listed_futures(symbol)[:2] for symbol in ("ES", "NQ")}
    options = [option for pair in futures.values() for future in pair
               for option in market.option_chain(future)]
    quotes = market.quotes([*options, *futures["ES"], *futures["NQ"]])
    marks = {quote.instrument.key: quote.mid for quote in quotes}
    clients = []
    for index in range(count):
        draw = random.Random(index)
        held = [draw.choice(futures["ES"]), draw.choice(futures["NQ"])]
        held += draw.sample(options, draw.randint(6, 20))
        positions = tuple(
            Position(instrument, quantity=draw.choice((-5, -3, -2, -1, 1, 2, 3, 5)),
                     average_price=round(marks[instrument.key] * draw.uniform(0.9, 1.1), 2))
            for instrument in dict.fromkeys(held)
        )
        structure = StructureRules(kind="short_strangle" if index % 3 == 2 else "none")
        parameters = AgentParameters(underlying="NQ" if index % 2 else "ES", structure=structure)
        clients.append(BenchClient(name=f"client-{index:03d}", positions=positions, parameters=parameters))
    return clients


def _market_instruments(client: BenchClient, desk: Desk) -> list[Instrument]:
    """What the policy reads quoted besides the book: the hedge future, and the chain while it
    may open a structure."""
    underlying = client.parameters.underlying
    chain = desk.chains[underlying] if client.parameters.structure.kind != "none" else ()
    return [desk.hedges[underlying], *chain]


def _quoted(risks: Sequence[InstrumentRisk], quotes: dict[str, Quote]) -> list[QuotedInstrument]:
    return [
        QuotedInstrument(risk=risk, bid=quotes[risk.instrument.key].bid, ask=quotes[risk.instrument.key].ask)
        for risk in risks
    ]


def _inputs(client: BenchClient, book: BookValuation, market_side: list[QuotedInstrument],
            now: datetime) -> PolicyInputs:
    hedge, *chain = market_side
    return PolicyInputs(now=now, parameters=client.parameters, limits=LIMITS, book=book, hedge=hedge,
                        chain=tuple(chain), structure=None, rate=RATE)


def inputs_batched(
    clients: list[BenchClient], desk: Desk, quotes: dict[str, Quote], now: datetime
) -> list[PolicyInputs]:
    """One greeks pass over every book's instruments, one over everything the clients read quoted."""
    books = value_books({client.name: client.positions for client in clients}, quotes, now=now, rate=RATE)
    wanted = list(dict.fromkeys(
        instrument for client in clients for instrument in _market_instruments(client, desk)
    ))
    risks = instruments_risk(wanted, quotes, now=now, rate=RATE)
    quoted = dict(zip(wanted, _quoted(risks, quotes), strict=True))
    return [
        _inputs(client, books[client.name],
                [quoted[instrument] for instrument in _market_instruments(client, desk)], now)
        for client in clients
    ]


def inputs_per_client(
    clients: list[BenchClient], desk: Desk, quotes: dict[str, Quote], now: datetime
) -> list[PolicyInputs]:
    """As `agents.services` values them today: each client's book, hedge and chain on their own."""
    inputs = []
    for client in clients:
        book = value_book(client.positions, quotes, now=now, rate=RATE)
        risks = instruments_risk(_market_instruments(client, desk), quotes, now=now, rate=RATE)
        inputs.append(_inputs(client, book, _quoted(risks, quotes), now))
    return inputs


Valuation = Callable[[list[BenchClient], Desk, dict[str, Quote], datetime], list[PolicyInputs]]


@dataclass(frozen=True, slots=True)
class RoundTiming:
    timing: Timing
    clients: int
    quotes_us: float  # mean per round
    greeks_us: float
    decide_us: float

    @property
    def cycles_per_second(self) -> float:
        return self.clients / (self.timing.mean_us / 1e6)

    @property
    def cycles_per_second_without_quotes(self) -> float:
        return self.clients / ((self.greeks_us + self.decide_us) / 1e6)


def one_round(market: SimulatedMarket, clients: list[BenchClient], desk: Desk, valuation: Valuation,
              phases: list[tuple[int, int, int]] | None = None) -> list[PolicyDecision]:
    """Quote what every client needs at once, value, decide; `phases` gets the three durations."""
    clock = time.perf_counter_ns
    started = clock()
    everything = list(dict.fromkeys(
        instrument for client in clients
        for instrument in (*(position.instrument for position in client.positions),
                           *_market_instruments(client, desk))
    ))
    quotes = {quote.instrument.key: quote for quote in market.quotes(everything)}
    quoted = clock()
    inputs = valuation(clients, desk, quotes, market.now())
    valued = clock()
    decisions = [decide(client_inputs) for client_inputs in inputs]
    if phases is not None:
        phases.append((quoted - started, valued - quoted, clock() - valued))
    return decisions


def measure(count: int, valuation: Valuation, name: str) -> RoundTiming:
    market = SimulatedMarket(SimConfig(seed=1), clock=SimClock.manual(START))
    desk, clients = desk_of(market), clients_of(market, count)
    rounds, warmup = ROUNDS[count]
    phases: list[tuple[int, int, int]] = []
    timing = time_calls(name, lambda: one_round(market, clients, desk, valuation, phases), calls=rounds,
                        warmup=warmup, between=lambda: market.clock.advance(CYCLE_SECONDS))
    measured = phases[warmup:]
    quotes_ns, greeks_ns, decide_ns = (sum(phase) / len(measured) for phase in zip(*measured, strict=True))
    return RoundTiming(timing=timing, clients=count, quotes_us=quotes_ns / 1e3, greeks_us=greeks_ns / 1e3,
                       decide_us=decide_ns / 1e3)


def check_batching_changes_nothing(count: int) -> int:
    """The batched and per-client rounds decide exactly alike; returns how many trades they propose."""
    market = SimulatedMarket(SimConfig(seed=1), clock=SimClock.manual(START))
    desk, clients = desk_of(market), clients_of(market, count)
    batched = one_round(market, clients, desk, inputs_batched)
    per_client = one_round(market, clients, desk, inputs_per_client)
    if repr(batched) != repr(per_client):  # repr: exact floats, NaN equal to NaN
        raise RuntimeError("batched greeks changed a decision")
    return sum(len(decision.trades) for decision in batched)


def cycle_rows(timings: list[RoundTiming]) -> str:
    width = max(len(t.timing.name) for t in timings)
    lines = [f"{'scenario':<{width}}  {'cycles/s':>9}  {'quotes ms':>9}  {'greeks ms':>9}  {'decide ms':>9}  "
             "cycles/s without quotes"]
    for t in timings:
        lines.append(f"{t.timing.name:<{width}}  {t.cycles_per_second:9.0f}  {t.quotes_us / 1e3:9.2f}  "
                     f"{t.greeks_us / 1e3:9.2f}  {t.decide_us / 1e3:9.2f}  "
                     f"{t.cycles_per_second_without_quotes:,.0f}")
    return "\n".join(lines)


def pure_main() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    trades = {count: check_batching_changes_nothing(count) for count in CLIENT_COUNTS}
    timings = []
    for count in CLIENT_COUNTS:
        timings.append(measure(count, inputs_batched, f"{count} client(s), greeks batched"))
        timings.append(measure(count, inputs_per_client, f"{count} client(s), greeks per client"))
    print(f"agent cycle benchmark (pure rounds), {date.today().isoformat()}, one core of: {machine()}")
    print(f"trades proposed in the first round: {trades}")
    print()
    print("per round (all clients):")
    print(report([t.timing for t in timings]))
    print()
    print("per round, mean of each phase:")
    print(cycle_rows(timings))


# ---------------------------------------------------------------------------------------------
# The service cycle on PostgreSQL

SERVICE_CYCLES = {1: (200, 10), 10: (300, 20)}  # timed cycles, warm-up cycles
PROFILED_CYCLES = 60
TRADER = risk.Actor("user", "bench")


def service_client(client_id: str) -> Client:
    """A bench client in confirmation mode, limits wide open, whose book is far enough from delta
    neutral that every cycle proposes a hedge."""
    client = Client.objects.filter(client_id=client_id).first()
    if client is None:
        client = client_onboard(client_id=client_id, name="Agent cycle benchmark",
                                owner_username=f"{client_id}-{secrets.token_hex(4)}",
                                owner_password=secrets.token_urlsafe(16), owner_email="bench@example.invalid",
                                actor="bench")
    with tenant_context(client):
        AgentConfig.objects.update_or_create(singleton=True, defaults={
            "mode": AgentConfig.Mode.CONFIRMATION,
            "parameters": {"risk_limits": BENCH_LIMITS, "band": {"method": "fixed", "width": 1.0}},
        })
        with risk.client_risk_lock(client), broker_session() as broker:
            drift = risk.book_sync(client=client, broker=broker).valuation.net_delta
            future = broker.lookup_instrument(symbol="ES", sec_type="FUT")
            chain = broker.option_chain(future)
            forward = broker.quote(future).mid
        if abs(drift) < 3.0:
            call = min((option for option in chain if option.right == "C"),
                       key=lambda option: (abs(option.strike - forward), option.expiry))
            result = risk.order_submit(client=client, actor=TRADER, order=OrderRequest(
                client_order_id=f"bench-drift-{secrets.token_hex(6)}", legs=(OrderLeg(call, "BUY", 10),),
                order_type="MKT"))
            if not (result.accepted and result.status is not None and result.status.state == "filled"):
                raise RuntimeError(f"the drift order did not fill: {result}")
    return client


def _reject_pending(client: Client) -> None:
    """So that the next cycle proposes afresh rather than keeping the pending proposal."""
    for proposal in Proposal.objects.filter(status=Proposal.Status.PENDING):
        agent_services.proposal_reject(client=client, proposal_id=str(proposal.pk), user="bench",
                                       reason="benchmark")


def service_cycles(clients: list[Client]) -> tuple[Callable[[], None], Callable[[], None]]:
    """(one cycle of the next client in turn, the untimed reset after it)."""
    run = secrets.token_hex(4)
    numbers = counter()
    last: list[Client] = []

    def cycle() -> None:
        number = next(numbers)
        client = clients[number % len(clients)]
        with tenant_context(client):
            outcome = agent_services.cycle_run(client=client, key=f"bench-{run}-{number}", trigger="bench")
        if outcome.decision is None or outcome.decision.outcome != AgentDecision.Outcome.PROPOSED:
            reason = outcome.decision.reason if outcome.decision else outcome.skipped
            raise RuntimeError(f"the benchmark expects every cycle to propose: {reason}")
        last[:] = [client]

    def reset() -> None:
        with tenant_context(last[0]):
            _reject_pending(last[0])

    return cycle, reset


def profile_of(clients: list[Client]) -> str:
    cycle, reset = service_cycles(clients)
    profile = cProfile.Profile()
    for _ in range(PROFILED_CYCLES):
        profile.enable()
        cycle()
        profile.disable()
        reset()
    text = io.StringIO()
    stats = pstats.Stats(profile, stream=text)
    ours = r"(agents|audit|brokers|risk|tenants|tradingplatform)/\w+\.py"  # the project's own functions
    stats.sort_stats("cumulative").print_stats(ours, 30)
    stats.sort_stats("tottime").print_stats(12)
    return text.getvalue()


def service_main() -> None:
    call_command("migrate_platform", verbosity=0)
    clients = [service_client(f"bench-agent-{index:02d}") for index in range(1, max(SERVICE_CYCLES) + 1)]
    timings = []
    for count, (cycles, warmup) in SERVICE_CYCLES.items():
        cycle, reset = service_cycles(clients[:count])
        timings.append(time_calls(f"cycle_run, {count} client(s) in turn", cycle, calls=cycles, warmup=warmup,
                                  between=reset))
    print(f"agent cycle benchmark (service), {date.today().isoformat()}, {machine()}")
    print()
    print(report(timings))
    for t in timings:
        print(f"{t.name}: {1e6 / t.mean_us:.1f} cycles/s")
    print()
    print(f"cProfile of {PROFILED_CYCLES} cycles over {len(clients)} clients:")
    print(profile_of(clients))


if __name__ == "__main__":
    if "--service" in sys.argv[1:]:
        service_main()
    else:
        pure_main()
