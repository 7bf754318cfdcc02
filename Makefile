# Two commands for a fresh machine:   make up    |    make test
# Everything else (virtualenv, Python packages, Apache Kafka from Maven Central, Debian SNMP tools)
# is installed by these targets on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: up test setup system-deps lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]' --config-settings editable_mode=compat
	$(BIN)/python -m ossbss.localstack.kafka install
	touch $@

system-deps:
	./scripts/install-system-deps.sh

up: setup
	$(BIN)/ossbss up $(ARGS)

test: setup system-deps
	$(BIN)/pytest -q $(ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: setup system-deps
	$(BIN)/ossbss bench --json bench-results.json $(ARGS)

clean:
	rm -rf var/kafka var/clickhouse var/streams var/log var/sql-endpoint.json
