# Every target creates and reuses .venv and installs what is missing; nothing is installed by hand.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test lint samples clean

$(STAMP): requirements.txt requirements-dev.txt requirements-ray.txt setup.py
	command -v java >/dev/null || (apt-get update -q && apt-get install -y -q openjdk-17-jre-headless)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt -r requirements-dev.txt -r requirements-ray.txt
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

samples: $(STAMP)
	$(BIN)/python examples/make_samples.py

# exit status 3 = finished with error rows: the demo's broken-image and missing-file ads, by design
demo: samples
	$(BIN)/adpolicy score examples/ads.jsonl -o examples/results.jsonl || test $$? -eq 3

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: samples lint
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) build *.egg-info examples/media examples/results.jsonl
