"""Products are data (brokers.products); the simulated market must be able to trade every one."""
from brokers.products import PRODUCTS, contract_disagreements
from brokers.simulator import MARKET_PARAMS


def test_every_product_has_simulator_parameters():
    # A product added without them would fail only when a client first trades it on the simulator.
    missing = sorted(set(PRODUCTS) - set(MARKET_PARAMS))
    assert missing == [], f"products without brokers.simulator.MARKET_PARAMS: {missing}"


def test_contract_details_that_agree_give_no_disagreement():
    es = PRODUCTS["ES"]
    assert contract_disagreements(es, option=False, exchange="CME", multiplier="50", min_tick=0.25,
                                  trading_class="ES") == []
    assert contract_disagreements(es, option=True, exchange="CME", multiplier=50.0, min_tick=0.05,
                                  trading_class="ES") == []
    assert contract_disagreements(es, option=True) == []  # nothing given, nothing compared


def test_each_disagreement_is_reported():
    gc = PRODUCTS["GC"]
    problems = contract_disagreements(gc, option=True, exchange="NYMEX", multiplier=10.0, min_tick=0.05,
                                      trading_class="GC")
    assert problems == [
        "GC option: exchange 'NYMEX', the table says 'COMEX'",
        "GC option: multiplier 10, the table says 100",
        "GC option: minimum tick 0.05, the table says 0.1",
        "GC option: trading class 'GC', the table says 'OG'",
    ]
