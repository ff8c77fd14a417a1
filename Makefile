# Developer entry points; CI runs `make test` via .ci/run.
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: bootstrap test lint demo

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
