"""Fixtures of the brokers tests."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _ibkr_direct_by_default(settings) -> None:
    """An IBKR connection made through the platform (connect-broker, a book sync) connects
    directly in these tests, as with IBKR_SESSION_PROCESS=false; the session process's own tests
    (test_ibkr_session.py) turn it back on and run the process."""
    settings.IBKR_SESSION_PROCESS = False
