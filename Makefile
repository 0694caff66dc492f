# Two commands after a clone: `make demo` and `make test`. Both create .venv when it is missing.
# Neither needs root: `make demo` installs the demo's packages only; `make test` adds the test
# stack and drives a browser if it finds one (CI=true installs Debian's chromium, as root).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_STAMP := $(VENV)/.installed-demo
TEST_STAMP := $(VENV)/.installed-test
# The frameworks' tested versions, inside the ranges pyproject allows users.
FRAMEWORKS := 'pipecat-ai[websocket]==1.14.0' 'livekit-agents==1.8.9'
PY_OK := import sys; sys.exit(sys.version_info < (3, 11))

.PHONY: install demo test lint bench clean python

# A .venv made by an older (or since removed) Python is rebuilt, whatever its stamps say.
ifneq ($(shell $(BIN)/python -c '$(PY_OK)' 2>/dev/null && echo ok),ok)
.PHONY: $(DEMO_STAMP) $(TEST_STAMP)
endif

define make_venv
	@if [ -e $(VENV) ] && ! $(BIN)/python -c '$(PY_OK)' 2>/dev/null; then \
		echo "$(VENV) was made by an older or missing Python: rebuilding it with $(PYTHON)"; \
		rm -rf $(VENV); fi
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
		echo "could not create $(VENV) with $(PYTHON); on Debian or Ubuntu install its venv module (sudo apt-get install python3-venv)" >&2; exit 1; }
	$(BIN)/python -m pip install -q --upgrade pip
endef

python:
	@$(PYTHON) -c '$(PY_OK)' 2>/dev/null || { \
		echo "s2-plugin needs Python 3.11 or newer; '$(PYTHON)' is $$($(PYTHON) --version 2>/dev/null || echo 'not installed')." >&2; \
		echo "Install one (macOS: brew install python@3.12; Debian/Ubuntu: sudo apt-get install python3.11-venv; or python.org)," >&2; \
		echo "then run: make PYTHON=python3.12 $(or $(MAKECMDGOALS),install)" >&2; exit 1; }

install: $(TEST_STAMP)

# What examples/demo.py needs: Pipecat, the sidecar and the CPU preview voice.
$(DEMO_STAMP): pyproject.toml Makefile | python
	$(make_venv)
	$(BIN)/python -m pip install -q -e '.[pipecat,server,preview]' 'pipecat-ai[websocket]==1.14.0'
	touch $@

$(TEST_STAMP): pyproject.toml Makefile | python
	$(make_venv)
	$(BIN)/python -m pip install -q -e '.[all,dev]' $(FRAMEWORKS)
	# SGLang-Omni's request schema, for the stand-in server; the full package is GPU only.
	$(BIN)/python -m pip install -q --no-deps sglang-omni==0.1.9
	touch $@ $(DEMO_STAMP)

lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The studio's tests drive a browser found by tests/support/browser.py (chromium or Chrome on
# PATH, the macOS apps, or $S2_BROWSER); without one they are skipped, except in CI, which
# installs Debian's chromium (CI runs as root) and requires it.
test: lint
ifeq ($(CI),true)
	command -v chromium >/dev/null || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium)
endif
	$(BIN)/python -m pytest -q -rs

bench: $(TEST_STAMP)
	for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

demo: $(DEMO_STAMP)
	$(BIN)/python examples/demo.py
	@echo
	@echo "Next: . $(VENV)/bin/activate, then s2-sidecar serve, and open http://127.0.0.1:8421/ (README: Quickstart)"

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
