# Every target builds its own virtualenv, so `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed
# One interpreter per supported minor version, newest patch release found under pyenv.
PYENV_ROOT ?= /root/.pyenv
ALL_PYTHONS = $(foreach v,3.9 3.10 3.11 3.12 3.13,$(lastword $(sort $(wildcard $(PYENV_ROOT)/versions/$(v).*/bin/python))))

.PHONY: system-deps demo test test-sqlalchemy test-ecosystem test-all soak lint bench docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,lint,bench]'
	touch $(STAMP)

# What the tests need from the system: Debian's libdqlite0 (the dqlite node the cluster
# tests start).  Installed when missing and we are root (CI, a fresh machine), and then the
# dqlite tests must run (AIOLITE_REQUIRE_DQLITE=1); elsewhere they skip, saying what to install.
HAVE_DQLITE = ldconfig -p 2>/dev/null | grep -q 'libdqlite\.so\.0'
system-deps:
	@if ! $(HAVE_DQLITE); then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing libdqlite0 (the dqlite node, for the cluster tests)"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -q libdqlite0 >/dev/null || \
	      { apt-get update -q >/dev/null && apt-get install -y -q libdqlite0 >/dev/null; }; \
	  else \
	    echo "note: libdqlite0 is missing: the dqlite tests will skip (apt-get install libdqlite0)"; \
	  fi; \
	fi
REQUIRE_DQLITE = $$( [ "$$(id -u)" = 0 ] && echo 1 || echo 0 )

demo: $(STAMP)
	$(PY) examples/task_tracker.py

test: $(STAMP) system-deps
	AIOLITE_REQUIRE_DQLITE=$(REQUIRE_DQLITE) $(PY) -m pytest -q
	$(MAKE) --no-print-directory test-sqlalchemy PYTHON=$(PYTHON) VENV=$(VENV)

# SQLAlchemy's dialect compliance suite on sqlite+aiolite, compared with sqlite+aiosqlite.
test-sqlalchemy: $(STAMP)
	$(PY) tests/sqlalchemy_suite/run.py

# aiosqlite's dependents' own suites (Tortoise ORM, encode/databases) on aiosqlite and on
# aiolite, side by side, in an environment of their own (tests/ecosystem/).
ECO_VENV = .venv-ecosystem
ECO_STAMP = $(ECO_VENV)/.installed
$(ECO_STAMP): pyproject.toml tests/ecosystem/requirements.txt
	$(PYTHON) -m venv $(ECO_VENV)
	$(ECO_VENV)/bin/python -m pip install -q --upgrade pip
	$(ECO_VENV)/bin/python -m pip install -q -e . -r tests/ecosystem/requirements.txt
	touch $(ECO_STAMP)

test-ecosystem: $(ECO_STAMP)
	$(ECO_VENV)/bin/python tests/ecosystem/run.py

# The chaos suite at length: 20 seeds per backend, 5 s each (tests/test_chaos.py).
soak: $(STAMP)
	CHAOS_SEEDS=$${CHAOS_SEEDS:-20} CHAOS_SECONDS=$${CHAOS_SECONDS:-5} \
	  $(PY) -m pytest -q -p no:randomly --timeout 600 tests/test_chaos.py

test-all:
	@set -e; for py in $(ALL_PYTHONS); do \
	  v=$$($$py -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
	  echo "=== Python $$v ($$py)"; \
	  $(MAKE) --no-print-directory test PYTHON=$$py VENV=.venv-$$v; \
	done

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/ruff format --check src tests benchmarks examples
	$(VENV)/bin/mypy

bench: $(STAMP) system-deps
	$(PY) -m benchmarks.run
	$(PY) -m benchmarks.pythons
	$(PY) -m benchmarks.database
	$(PY) -m benchmarks.sqlalchemy_rmw
	$(PY) -m benchmarks.dqlite --seconds 3 --failovers 3 --go
	$(PY) -m benchmarks.sqlalchemy_mix
	$(PY) -m benchmarks.wal_limit
	$(PY) -m benchmarks.sandbox
	$(PY) -m benchmarks.fastapi_load
	$(PY) -m benchmarks.fastapi_sqlalchemy_load

# The docs site (mkdocs-material + an API reference from the docstrings) into site/;
# --strict turns every warning into an error.
DOCS_STAMP = $(VENV)/.docs-installed
$(DOCS_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[docs]'
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	@# NO_MKDOCS_2_WARNING: silences mkdocs-material's end-of-life banner (not a build warning).
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

clean:
	rm -rf .venv .venv-* build dist *.egg-info site
