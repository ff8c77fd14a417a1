# Developer entry points; CI runs `make test` via .ci/run.
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: bootstrap test lint demo pump meltano pumps-check

# Idempotent and fast when nothing changed (see scripts/bootstrap).
bootstrap:
	@bash scripts/bootstrap

test: bootstrap
	$(PY) -m pytest $(PYTEST_ARGS)

lint: bootstrap
	$(PY) -m ruff check .

# The local pipeline in one command (README): installs what is missing, starts Postgres in
# .local/pg, creates the demo source, runs the Meltano job `pipeline`, prints a summary.
# Again: touches the source and runs incrementally. DEMO_ARGS="--reset" starts over,
# DEMO_ARGS="--rows 20000" picks the size of a fresh source.
DEMO_ARGS ?=
demo:
	@python3 scripts/demo $(DEMO_ARGS)

# The Data Pump (README.md, "The Data Pump"). The pump extractors' selection comes from
# pumps.yml at run time: pumps-check prints TAP_PUMPS__SELECT / __METADATA (and the same
# for prod's tap-pumps-snowflake), Meltano reads them. Needs `make demo`'s local S3 running.
#   make pump                          meltano run pump (dev)
#   make meltano ARGS="run pipeline"   any meltano command with the selection set
PUMPS_FILE ?= pumps.yml
PUMP_SELECTION = eval "$$(.venv/bin/pumps-check $(PUMPS_FILE) --meltano-env tap-pumps)" \
	&& eval "$$(.venv/bin/pumps-check $(PUMPS_FILE) --meltano-env tap-pumps-snowflake)"
ARGS ?= run pump
pump:
	@$(PUMP_SELECTION) && .venv/bin/meltano run pump
meltano:
	@$(PUMP_SELECTION) && .venv/bin/meltano $(ARGS)
# Validate pumps.yml against the target's resolved settings (stages, buckets), writing nothing.
pumps-check:
	@cfg=$$(mktemp) && trap 'rm -f "$$cfg"' EXIT \
	&& .venv/bin/meltano --log-level=warning invoke --dump=config target-s3-pump >"$$cfg" \
	&& .venv/bin/pumps-check $(PUMPS_FILE) --config "$$cfg"
