# Two commands: `make run` serves the platform, `make test` runs the whole test suite.
# Both need only Python 3.11 and make: the virtual environment and the database and Redis
# servers (embedded, unless DATABASE_URL / REDIS_URL name others) are set up on the way.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: run test install bench clean-data

run: $(STAMP)
	$(VENV)/bin/python -m tradingplatform.devstack run

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m tradingplatform.devstack test

bench: $(STAMP)
	$(VENV)/bin/python -m bench.greeks_bench
	$(VENV)/bin/python -m bench.governor_bench
	$(VENV)/bin/python -m bench.hedging_bench
	$(VENV)/bin/python -m tradingplatform.devstack exec -- $(VENV)/bin/python -m bench.pretrade_bench
	$(VENV)/bin/python -m tradingplatform.devstack exec -- $(VENV)/bin/python -m bench.onboarding_bench
	$(VENV)/bin/python -m bench.agent_cycle_bench
	$(VENV)/bin/python -m tradingplatform.devstack exec -- $(VENV)/bin/python -m bench.agent_cycle_bench --service
	$(VENV)/bin/python -m tradingplatform.devstack exec -- $(VENV)/bin/python -m bench.stream_latency_bench
	$(VENV)/bin/python -m tradingplatform.devstack exec -- $(VENV)/bin/python -m bench.desk_book_bench
	$(VENV)/bin/python -m tradingplatform.devstack exec -- $(VENV)/bin/python -m bench.desk_live_bench
	$(VENV)/bin/python -m tradingplatform.devstack exec -- $(VENV)/bin/python -m bench.ibkr_session_bench

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

clean-data:
	rm -rf .data
