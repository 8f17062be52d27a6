# The two commands: `make run` (the whole system) and `make test` (every test).
SHELL := /bin/bash
.DEFAULT_GOAL := help
PY := .venv/bin/python
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
DEVSTACK_DIR ?= .devstack

.PHONY: help install lint typecheck test test-unit test-integration run infra-up infra-down docs schemas bench demo token clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(UV):
	@echo "installing uv (the workspace's package manager) from PyPI"
	python3 -m pip install --quiet --user uv

.venv/.synced: $(UV) pyproject.toml uv.lock shared/pyproject.toml services/*/pyproject.toml
	$(UV) sync --frozen --all-packages
	@touch $@

install: .venv/.synced ## install the workspace (uv, locked dependencies)

lint: install ## ruff
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check shared services tests deploy

typecheck: install ## mypy --strict on the shared package and the services
	$(UV) run --frozen mypy shared/src services/assignment/src services/reminder/src services/insights/src

test: lint typecheck ## lint, type checks and every test (unit, contracts, integration, e2e), in two phases of sessions
	$(UV) run --frozen python tests/run_tiers.py

test-unit: install ## only the tests that need no infrastructure
	$(UV) run --frozen pytest -m unit

infra-up: install ## start the local Kafka broker and MongoDB server (.devstack/env has their addresses; MONGO_SERVER=rust|python)
	@$(PY) deploy/local/devstack.py up --dir $(DEVSTACK_DIR)

infra-down: ## stop exactly what infra-up started
	@if [ -x $(PY) ]; then $(PY) deploy/local/devstack.py down --dir $(DEVSTACK_DIR); fi

run: install ## start the infrastructure (unless KAFKA_BOOTSTRAP_SERVERS/MONGODB_URI are set) and every service
	@$(PY) deploy/local/run.py --dir $(DEVSTACK_DIR)

docs: install ## regenerate the event schemas, docs/events.md and the AsyncAPI documents in docs/asyncapi/
	$(PY) -m homework_shared.events.schemas write
	$(PY) -m homework_shared.events.reference_page docs/events.md
	ENVIRONMENT=development $(PY) deploy/local/asyncapi_docs.py docs/asyncapi

schemas: install ## regenerate the published JSON Schemas (refuses breaking changes to a v1 type)
	$(PY) -m homework_shared.events.schemas write

bench: install ## run every benchmark and write docs/benchmarks.md
	$(PY) -m tests.bench.run_all

demo: install ## a week of homework in ~2 minutes: against `make run CLOCK_SPEED=7200` if running, else self-contained
	$(PY) deploy/local/demo.py --run-json $(DEVSTACK_DIR)/run.json --out $(DEVSTACK_DIR)/demo

token: install ## mint a development JWT: make token ROLE=therapist SUB=t1 PRACTICE=p1 [TTL=3600 ISSUER=... AUDIENCE=...]
	@$(PY) -m homework_shared.auth.mint --role $(or $(ROLE),therapist) --sub $(or $(SUB),therapist-1) --practice $(or $(PRACTICE),practice-1) $(if $(TTL),--ttl $(TTL)) $(if $(ISSUER),--issuer $(ISSUER)) $(if $(AUDIENCE),--audience $(AUDIENCE))

clean: infra-down
	rm -rf .venv .devstack .pytest_cache .mypy_cache .ruff_cache

.PHONY: manifests config-reference dlq-replay monitoring promtool

monitoring: install ## regenerate the PrometheusRule manifest and the Grafana dashboards from their sources, then check the rules with promtool
	$(PY) -m deploy.prometheus.render
	$(PY) -m deploy.grafana.build
	$(PY) -m deploy.local.promtool check rules deploy/prometheus/rules.yml
	$(PY) -m deploy.local.promtool test rules deploy/prometheus/tests.yml

promtool: install ## fetch promtool into the devstack cache (Debian package, else go install; make test does it when missing)
	$(PY) -c "from deploy.local.promtool import promtool_path; print(promtool_path())"

manifests: install ## print the Kubernetes manifests of an overlay: make -s manifests OVERLAY=prod > prod.yaml
	@$(PY) deploy/k8s/render.py $(or $(OVERLAY),dev)

config-reference: install ## regenerate the configuration reference in docs/deploy.md from the settings classes
	$(PY) deploy/config_reference.py --write

dlq-replay: install ## replay a consumer group's dead-letter topic: make dlq-replay GROUP=reminder [SINCE=2h] [DRY_RUN=1]
	@test -n "$(GROUP)" || { echo "GROUP=<consumer group> is required, e.g. make dlq-replay GROUP=reminder DRY_RUN=1" >&2; exit 2; }
	@set -a; if [ -z "$$KAFKA_BOOTSTRAP_SERVERS" ] && [ -f $(DEVSTACK_DIR)/env ]; then . $(DEVSTACK_DIR)/env; fi; set +a; \
	$(PY) -m homework_shared.dlq_replay --group '$(GROUP)' $(if $(SINCE),--since '$(SINCE)') $(if $(DRY_RUN),--dry-run) $(if $(MAX_REPLAYS),--max-replays '$(MAX_REPLAYS)')
