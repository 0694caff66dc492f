# Two commands after a clone: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# The frameworks' tested versions, inside the ranges pyproject allows users.
	$(BIN)/python -m pip install -q -e '.[all,dev]' 'pipecat-ai[websocket]==1.14.0' 'livekit-agents==1.8.9'
	# SGLang-Omni's request schema, for the stand-in server; the full package is GPU only.
	$(BIN)/python -m pip install -q --no-deps sglang-omni==0.1.9
	# The persona studio's tests drive a real browser: Debian's chromium (CI runs as root).
	command -v chromium >/dev/null || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium) \
		|| { echo "install Debian's chromium for the studio tests: sudo apt-get install chromium" >&2; exit 1; }
	touch $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q

bench: install
	for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

demo: install
	$(BIN)/python examples/demo.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
