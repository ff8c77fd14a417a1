# Developer entry points; CI runs `make test` via .ci/run.
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: bootstrap test lint

# Idempotent and fast when nothing changed (see scripts/bootstrap).
bootstrap:
	@bash scripts/bootstrap

test: bootstrap
	$(PY) -m pytest $(PYTEST_ARGS)

lint: bootstrap
	$(PY) -m ruff check .
