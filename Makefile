# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
UV := .tools/bin/uv
VENV := .venv

.PHONY: install run test test-unit test-integration test-e2e chaos lint clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet "uv>=0.13,<0.14"

# The venv is (re)synced from uv.lock whenever a project file changed.
$(VENV)/.synced: $(UV) uv.lock pyproject.toml $(wildcard libs/*/pyproject.toml services/*/pyproject.toml)
	$(UV) sync --all-packages --frozen --python $(PYTHON)
	touch $@

install: $(VENV)/.synced

run: install
	$(VENV)/bin/reelvault up

test: install
	$(VENV)/bin/python -m pytest

test-unit: install
	$(VENV)/bin/python -m pytest tests/unit

test-integration: install
	$(VENV)/bin/python -m pytest tests/integration

test-e2e: install
	$(VENV)/bin/python -m pytest tests/e2e

# The full chaos run (300 requests, single node then a 3-node NATS cluster); prints the figures.
chaos: install
	$(VENV)/bin/python -m tests.support.chaos --requests 300

# Archiver MB/s vs a raw loopback copy (200 and 500 MB; filesystem and Supabase test server).
.PHONY: bench-archive
bench-archive: install
	$(VENV)/bin/python bench/archive.py

# Whole-pipeline videos/s and latencies vs raw JetStream on the same NATS (simulator fast mode).
.PHONY: bench-pipeline
bench-pipeline: install
	$(VENV)/bin/python bench/pipeline.py

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy libs/common/src services/*/src src

clean:
	rm -rf .venv .tools .reelvault
