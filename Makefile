# `make demo` and `make test` each create .venv when missing, install the project (only when
# pyproject.toml changed) and then do their job.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint bench clean chromium

install: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev,lab,distributed]'
	touch $(STAMP)

demo: install
	$(PY) -m taskforge_perf demo

test: install chromium
	$(PY) -m pytest -q

# Headless Chromium for the report test (tests/test_report.py opens the HTML report offline).
# Debian's package; installed only when missing (CI runs as root with no stdin), else a no-op.
CHROMIUM := /usr/bin/chromium

chromium:
	@if [ ! -x $(CHROMIUM) ]; then \
		echo "installing chromium (Debian package) for the report test ..."; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium </dev/null; \
	fi

lint: install
	$(PY) -m ruff check taskforge_perf tests benchmarks
	$(PY) -m mypy taskforge_perf

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
