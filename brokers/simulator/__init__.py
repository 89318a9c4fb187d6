"""The simulated market (transitional: the module moved to `brokers.simulator.account`)."""
from brokers.simulator.account import *  # noqa: F401,F403
