# make run  : one replica on the embedded broker at http://127.0.0.1:8000
# make test : install everything needed, lint, type-check and run the whole suite
VENV    ?= .venv
PYTHON  ?= python3
BIN      = $(VENV)/bin
STAMP    = $(VENV)/.installed

.PHONY: run test check pytest system-deps bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e ".[dev,bench]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/herald serve

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

check: $(STAMP)
	scripts/check

pytest: $(STAMP) system-deps
	scripts/test

test: check pytest

bench: $(STAMP)
	$(BIN)/herald bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis *.egg-info
