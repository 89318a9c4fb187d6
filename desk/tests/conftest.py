"""Fixtures of the desk's browser tests (helpers in desk/tests/browsing.py)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from desk.tests.browsing import ARGS, CHROMIUM
from tradingplatform.tests.servers import daphne_server, subprocess_env_for_tests


@pytest.fixture
def committed(django_db_blocker):
    """The test's writes commit at once, so that daphne (another process) sees them."""
    with django_db_blocker.unblock():
        yield


@pytest.fixture(scope="module")
def server(django_db_setup):
    """A real daphne on the test database; it sees what the tests commit."""
    with daphne_server(subprocess_env_for_tests()) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"The browser tests need Debian's chromium at {CHROMIUM}: apt-get install chromium "
                    "(make test installs it when it can).")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread; the ORM calls these tests
    # make between browser steps are synchronous and safe (Playwright's documented Django setting).
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous
