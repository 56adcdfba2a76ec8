# Two commands for users: `make run` (the main job) and `make test` (the whole suite).
# Both build the virtual environment and fetch the data first, on a fresh machine too.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# The CPU wheel of torch 2.13.0 lies on the development machines' disk; the package itself accepts any torch >= 2.4.
TORCH_PIN ?= torch==2.13.0
EXTRAS ?= serve,export,bench,viz,hf,tensorboard,audit,optuna,dev

.PHONY: run test venv system-data browser lint bench clean help

help:
	@echo "make run    - set up, get and verify the data, train and evaluate the default CNN"
	@echo "make test   - set up, then run the whole test suite"
	@echo "make lint   - ruff"
	@echo "make bench  - the long measurements in benchmarks/"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_PIN)"
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	touch $(STAMP)

venv: $(STAMP)

# The operating system's copy of the data (Debian/Ubuntu). Optional: without apt-get, or without
# the right to use it, the toolkit downloads from the mirrors instead.
system-data:
	@if [ -d /usr/share/datasets/fashion-mnist ]; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
	  || echo "note: apt-get could not install dataset-fashion-mnist; the data will be downloaded"; \
	else echo "note: no apt-get as root here; the data will be downloaded from the mirrors"; fi

# Headless Chromium and its driver for the page tests (Debian's packages; never a downloaded browser).
browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
	  || echo "note: could not install chromium; browser tests will fail"; \
	else echo "note: chromium is missing and cannot be installed here"; fi

run: venv system-data
	$(BIN)/fmnist data fetch
	$(BIN)/fmnist run

test: venv system-data browser
	$(BIN)/fmnist data fetch
	$(BIN)/python -m pytest

lint: venv
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

# The CPU measurements behind benchmarks/RESULTS.md (about 40 minutes on 2 idle cores; the
# scikit-learn pass and the audit are separate: benchmarks/bench_sklearn.md, bench_audit.sh).
bench: venv system-data
	$(BIN)/fmnist data fetch
	$(BIN)/python benchmarks/bench_cpu_throughput.py
	$(BIN)/python benchmarks/bench_data_load.py --repeats 7
	benchmarks/bench_cnn.sh
	$(BIN)/python benchmarks/bench_serve.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
