# Each target sets up what it needs; running one twice does no work twice.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
OPTUNA_PLUGIN := hydra-optuna-sweeper==1.3.0
PG_INITDB := $(wildcard /usr/lib/postgresql/*/bin/initdb)
PLAYWRIGHT := playwright>=1.40

.PHONY: sweep test test-all install-check gpu-check postgres browser clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# compat: the checkout itself on sys.path, where Hydra's plugin scan finds hydra_plugins/archsearch_sweeper
	# (setuptools' default editable finder hides it from the scan).
	$(PY) -m pip install -q -e '.[test]' --config-settings editable_mode=compat
	# The one place the plugin's stale pin (optuna<3) is overridden: its code runs on optuna 5, whose
	# version pyproject.toml pins; --no-deps keeps pip from downgrading optuna and SQLAlchemy.
	$(PY) -m pip install -q --no-deps $(OPTUNA_PLUGIN)
	touch $@

sweep: $(VENV)/.installed  ## the main job: the default Optuna sweep, then its best confirmed over 3 seeds; the verdict
	$(PY) sweep/main.py --confirm="$(CONFIRM_ARGS)" $(ARGS)

# The default suite on every core (pytest-xdist), a test file per worker: its module fixtures are built once.
# Files go out in collection order, which tests/conftest.py starts with the slowest (not xdist's most-tests-first).
# test-all stays in one process: its signal and timing tests measure against a machine that is otherwise idle.
test: $(VENV)/.installed  ## the default suite (slow tests excluded); needs no root, changes nothing outside the checkout
	$(PY) -m pytest -m "not slow" -n auto --dist loadfile --no-loadscope-reorder $(ARGS)

test-all: $(VENV)/.installed postgres browser  ## everything, as CI runs it; installs PostgreSQL and Chromium where it can
	$(PY) -m pytest $(ARGS)

# The package as users install it: not editable, into a fresh venv (pip's cache makes that quick), from a copy of
# the tracked files (the build writes build/ into its source); then one tiny epoch from outside the checkout.
install-check:  ## pip install . into a fresh temp venv and train one tiny epoch from another directory
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	git ls-files -z | tar --null -T - -cf - | tar -xf - -C "$$tmp" --one-top-level=src; \
	$(PYTHON) -m venv "$$tmp/venv"; \
	"$$tmp/venv/bin/python" -m pip install -q "$$tmp/src"; \
	"$$tmp/venv/bin/python" -m pip install -q --no-deps $(OPTUNA_PLUGIN); \
	cd "$$tmp" && OMP_NUM_THREADS=1 venv/bin/python -m archsearch data.train_subset=2000 data.test_subset=500 \
		train.epochs=1 train.progress=false train.checkpoint=false data.root="$$tmp/data"; \
	test -f "$$tmp"/outputs/runs/*/metrics.json && echo "install-check: the installed package trained from $$tmp"

gpu-check: $(VENV)/.installed  ## the CUDA tests and GPU timings (needs a CUDA device; a few minutes)
	PY=$(PY) bash bench/gpu_check.sh

# The PostgreSQL tests (all slow) start a throw-away cluster and need its binaries. For test-all, where they are
# missing, they are installed if this is root on a system with apt-get; anywhere else those tests skip, saying why
# (in CI they fail instead). make test never installs anything outside the checkout.
postgres:
ifeq ($(PG_INITDB),)
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	else \
		echo "PostgreSQL's server binaries are missing and need root and apt-get to install: its tests will skip"; \
	fi
endif

# The dashboard's browser test drives the system's Chromium with Playwright (its own browser download needs a
# network this project does not assume). Chromium is installed like PostgreSQL above; Playwright into the venv.
browser: $(VENV)/.installed
	@if ! command -v chromium >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else \
			echo "Chromium is missing and needs root and apt-get to install: the dashboard's browser test will skip"; \
		fi; \
	fi
	$(PY) -m pip install -q '$(PLAYWRIGHT)'

clean:
	rm -rf $(VENV) *.egg-info
