# The README's two commands. Both create the virtual environment on first use
# and reuse it afterwards (the stamp file is rebuilt only when pyproject.toml changes).
#
#   make demo   set up, then serve the dashboard on the built-in demo model
#   make test   set up (including headless Chromium for the browser tests), lint, docs, then run every test
#   make lint   ruff (lint and format check), mypy (inspector/, dashboards/) and import-linter (the layers of
#               docs/architecture.md), as configured in pyproject.toml
#   make docs   the documentation site (docs/, mkdocs.yml) into site/, every warning an error

VENV  ?= .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The CPU build of torch, installed before anything else so that no dependency
# pulls a multi-GB CUDA build onto a machine without a GPU. On a GPU machine:
#   make demo TORCH_SPEC=torch
TORCH_SPEC ?= torch==2.13.0
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint docs setup browser clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[test]"
	@touch $(STAMP)

# The dashboard on the built-in demo model (trained on first use, cached in .cache/), at 127.0.0.1:8050.
demo: $(STAMP)
	DENSE_INSPECTOR_CACHE=$(CURDIR)/.cache $(VENV)/bin/inspector dashboard

# Debian's chromium and chromium-driver drive the dash_duo browser tests and kaleido's exports.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium chromium-driver)

# Lint and type check: fast, so it runs before the tests and fails first.
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports

# The documentation site, strict: a broken internal link, a page missing from the nav or a docstring
# the API reference cannot parse fails it. About 5 s, so it runs before the tests too.
# NO_MKDOCS_2_WARNING silences Material's banner about MkDocs 2 (advice, not a warning about the site).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

test: $(STAMP) browser lint docs
	$(PY) -m pytest --headless

clean:
	rm -rf $(VENV) .cache .pytest_cache artifacts site
