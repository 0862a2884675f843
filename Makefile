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

lint: install
	$(VENV)/bin/ruff check .

clean:
	rm -rf .venv .tools .reelvault
