# Developer entry points; CI runs `make test` via .ci/run.
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: bootstrap test lint demo pump meltano pumps-check definitions

# Idempotent and fast when nothing changed (see scripts/bootstrap).
bootstrap:
	@bash scripts/bootstrap

test: bootstrap
	$(PY) -m pytest $(PYTEST_ARGS)

# The fast lane (about 2 minutes): all but the Meltano/dbt end-to-end tests (marker `e2e`)
# and the long plugin tests (`slow`); `make test`, as CI, runs everything.
.PHONY: test-fast
test-fast: bootstrap
	$(PY) -m pytest -m "not e2e and not slow" $(PYTEST_ARGS)

# ruff; mypy per plugin (each with its pyproject's [tool.mypy]); sqlfluff on transform/;
# the definitions derived from the plugins' --about and from pumps.yml are up to date.
MYPY_PACKAGES := tap-gitlab-postgres/tap_gitlab_postgres target-s3-pump/target_s3_pump \
	tap-pumps-snowflake/tap_pumps_snowflake
lint: bootstrap
	$(PY) -m ruff check .
	@set -e; for pkg in $(MYPY_PACKAGES); do \
	  $(PY) -m mypy --config-file "$${pkg%%/*}/pyproject.toml" "$$pkg"; done
	.venv/bin/sqlfluff lint transform/
	$(PY) -m pytest -q -p no:cacheprovider tests/test_definitions.py

# The local pipeline in one command (README): installs what is missing, starts Postgres in
# .local/pg, creates the demo source, runs the Meltano job `pipeline`, prints a summary.
# Again: touches the source and runs incrementally. DEMO_ARGS="--reset" starts over,
# DEMO_ARGS="--rows 20000" picks the size of a fresh source.
DEMO_ARGS ?=
demo:
	@python3 scripts/demo $(DEMO_ARGS)

# Airflow (orchestrate/README.md): its own venv, .airflow-venv, pinned in
# orchestrate/requirements.txt (fast when nothing changed). `make orchestrate-demo` runs the
# pgp DAG on the demo source, tables in parallel (ORCHESTRATE_ARGS="--workers 2", "--reset").
.PHONY: airflow-venv orchestrate-demo
airflow-venv: bootstrap
	@bash orchestrate/airflow-venv
ORCHESTRATE_ARGS ?=
orchestrate-demo: airflow-venv
	@$(PY) -m orchestrate.demo $(ORCHESTRATE_ARGS)

# The Data Pump (README.md, "The Data Pump"): plain `meltano run pump` reads what pumps.yml
# lists (plugins/pumps.meltano.yml, from `make definitions`). Needs `make demo`'s local S3.
#   make pump                          meltano run pump (dev)
#   make meltano ARGS="run pipeline"   any meltano command
PUMPS_FILE ?= pumps.yml
ARGS ?= run pump
pump:
	@.venv/bin/meltano run pump
meltano:
	@.venv/bin/meltano $(ARGS)
# Regenerate what is derived from the plugins' --about and from pumps.yml: lock files,
# the in-repo plugins' meltano-plugin.yml and README settings tables, plugins/pumps.meltano.yml.
definitions:
	@$(PY) scripts/plugin_definitions.py
# Validate pumps.yml against the target's resolved settings (stages, buckets), writing nothing.
pumps-check:
	@cfg=$$(mktemp) && trap 'rm -f "$$cfg"' EXIT \
	&& .venv/bin/meltano --log-level=warning invoke --dump=config target-s3-pump >"$$cfg" \
	&& .venv/bin/pumps-check $(PUMPS_FILE) --config "$$cfg"
