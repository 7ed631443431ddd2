# `make demo` and `make test` each create .venv when missing, install the project (only when
# pyproject.toml changed) and then do their job.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint bench clean

install: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev,lab]'
	touch $(STAMP)

demo: install
	$(PY) -m taskforge_perf demo

test: install
	$(PY) -m pytest -q

lint: install
	$(PY) -m ruff check taskforge_perf tests benchmarks
	$(PY) -m mypy taskforge_perf

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
