# Two commands do all the set-up on a fresh machine (Python 3.11, make, apt):
#   make demo   run the curated notebooks against the bundled simulator, HTML into reports/
#   make test   lint, types, import contracts, the API reference build, then every test
#               (virtualenv, packages and Chromium installed as needed)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint docs bench chromium pdf-tools java clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Debian's chromium for the browser tests; never a downloaded browser build. Without it the
# browser tests skip on a developer's machine; under CI (CI=true) a failed install stops here.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium fonts-dejavu-core >/dev/null; } || { \
	  if [ -n "$$CI" ]; then echo "could not install chromium with apt-get" >&2; exit 1; fi; \
	  echo "chromium is not installed (apt-get install chromium): the browser tests will be skipped"; }

# poppler-utils (pdftoppm) for the PDF tests, which turn a report's pages into images to look at.
pdf-tools:
	@command -v pdftoppm >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq poppler-utils >/dev/null; } || { \
	  if [ -n "$$CI" ]; then echo "could not install poppler-utils with apt-get" >&2; exit 1; fi; \
	  echo "poppler-utils is not installed (apt-get install poppler-utils): the PDF tests will be skipped"; }

# Debian's Java runtime for the tests that run the same analysis on a local PySpark. Without it
# those tests skip on a developer's machine; under CI (CI=true) a failed install stops here.
java:
	@command -v java >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq default-jre-headless >/dev/null; } || { \
	  if [ -n "$$CI" ]; then echo "could not install default-jre-headless with apt-get" >&2; exit 1; fi; \
	  echo "java is not installed (apt-get install default-jre-headless): the PySpark tests will be skipped"; }

demo: $(STAMP)
	$(BIN)/anam-notebooks demo

test: lint docs chromium pdf-tools java
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# ruff (style and bugs), mypy (strict on the public API), import-linter (the layers of DESIGN.md)
lint: $(STAMP)
	$(BIN)/ruff check anam_notebooks tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

# The API reference from the docstrings; any warning (a missing name, a bad section) fails it.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir $(VENV)/site

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) reports test-artifacts .pytest_cache .import_linter_cache
