# Two commands set everything up on a fresh machine (Python 3.10+ with venv):
#   make demo   - create .venv, install, train a robust model on the embedded digits and export it
#   make test   - run the test suite (the venv includes the optional extra "distributed", Ray, which
#                 the sweep tests use)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: venv demo test benchmark clean

$(VENV)/.installed: setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test,distributed]"
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(PY) bin/train.py --dataset=digits --overwrite

test: venv
	$(PY) -m pytest -x -q -n 2 --dist loadfile

benchmark: venv
	$(PY) bin/benchmark.py

clean:
	rm -rf $(VENV) runs saved_models/digits_robust
