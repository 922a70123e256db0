# Each target sets up what it needs; running one twice does no work twice.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PG_INITDB := $(wildcard /usr/lib/postgresql/*/bin/initdb)

.PHONY: sweep test test-all postgres clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

sweep: $(VENV)/.installed  ## the main job: the default Optuna sweep (python sweep/run.py -m)
	$(PY) sweep/run.py -m $(ARGS)

test: $(VENV)/.installed postgres  ## the default suite (slow tests excluded)
	$(PY) -m pytest -m "not slow" $(ARGS)

test-all: $(VENV)/.installed postgres
	$(PY) -m pytest $(ARGS)

postgres:  ## the concurrency tests start a throw-away PostgreSQL cluster; they need its binaries
ifeq ($(PG_INITDB),)
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
endif

clean:
	rm -rf $(VENV) *.egg-info
