# The two entry points: `make reproduce` (the main job) and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: test reproduce bench-memory bench-speed clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

bench-memory: $(STAMP)
	$(PY) benchmarks/memory.py

bench-speed: $(STAMP)
	$(PY) benchmarks/speed.py

reproduce: $(STAMP)
	$(PY) benchmarks/memory.py

clean:
	rm -rf results runs .pytest_cache
