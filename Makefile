# make run   : install the runtime dependencies only, start one replica on the embedded broker
#              at http://127.0.0.1:8000 (make run PORT=9000 for another port; HERALD_* settings
#              from the environment apply too)
# make test  : install everything else (test, lint, benchmark and tracing extras), lint, type-check, run the suite
# make bench : the benchmarks (herald bench; needs the bench extra, installed by make test too)
VENV    ?= .venv
PYTHON  ?= python3
PORT    ?=
BIN      = $(VENV)/bin
# Two stamps: `make run` must not pull in pytest, playwright or picows; `make test` adds them.
RUNTIME  = $(VENV)/.installed-runtime
DEV      = $(VENV)/.installed

.PHONY: run test check pytest system-deps bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(RUNTIME): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e .
	touch $(RUNTIME)

# the Python client (clients/python, its own distribution) is installed too: its tests are in the suite
$(DEV): $(BIN)/python pyproject.toml clients/python/pyproject.toml
	$(BIN)/pip install -q -e ".[dev,bench,otel]" -e clients/python
	touch $(RUNTIME) $(DEV)

run: $(RUNTIME)
	$(BIN)/herald serve $(if $(PORT),--port $(PORT))

# redis-server, nginx and chromium are real test peers; installed when missing and we may (root + apt).
system-deps:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v nginx >/dev/null || test -x /usr/sbin/nginx || missing="$$missing nginx-light"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "not installed:$$missing (their tests will skip)"; fi; \
	fi

check: $(DEV)
	scripts/check

pytest: $(DEV) system-deps
	scripts/test

test: check pytest

bench: $(DEV)
	$(BIN)/herald bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis *.egg-info
