# Two entry points: `make demo` (build the virtualenv, install, run the demo on the embedded sandbox)
# and `make test` (the whole test suite; CI runs `make lint` then this via .ci/run).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install demo test test-live bench wheel-test clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/massive-feeds demo

# Lint and type checks on the library and the strategies (configured in pyproject.toml).
lint: install
	$(PY) -m ruff check massive_feeds strategies benchmarks
	$(PY) -m mypy

# Two workers (CI has 2 cores); --dist loadfile keeps each test file on one worker, so a module's shared
# sandbox starts once and the README's blocks run in order in one folder; files with `slow` tests are
# handed out first (tests/conftest.py). Much of the suite waits on subprocesses, sockets and market
# clocks, so two workers finish well before one. Tests marked `serial` (flush deadlines, browser waits:
# sensitive to a busy CPU) then run alone. Both runs always happen; either failing fails the target.
test: install
	$(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder -m "not serial"; parallel=$$?; \
	$(PY) -m pytest -q -m serial; serial=$$?; \
	[ $$parallel -eq 0 ] && [ $$serial -eq 0 ]

# Tests against the real service; needs MASSIVE_LIVE_API_KEY.
test-live: install
	$(PY) -m pytest -q -m live

# Build the wheel and install it into fresh virtualenvs, as users do (CI runs this too).
wheel-test:
	bash .ci/wheel-smoke

bench: install
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) output .pytest_cache
