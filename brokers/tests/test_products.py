"""Products are data (brokers.products); the simulated market must be able to trade every one."""
from brokers.products import PRODUCTS
from brokers.simulator import MARKET_PARAMS


def test_every_product_has_simulator_parameters():
    # A product added without them would fail only when a client first trades it on the simulator.
    missing = sorted(set(PRODUCTS) - set(MARKET_PARAMS))
    assert missing == [], f"products without brokers.simulator.MARKET_PARAMS: {missing}"
