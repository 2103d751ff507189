# The two entry points: `make reproduce` (the main job) and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: test test-fast test-e2e lab claim docs reproduce bench-memory bench-models bench-speed bench-frontier clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# The Jupyter kernel the notebooks name: "dropit", this environment's Python (make reproduce registers the same).
KERNEL := $(VENV)/share/jupyter/kernels/dropit/kernel.json
$(KERNEL): $(STAMP)
	$(PY) -m ipykernel install --sys-prefix --name dropit --display-name "Python (dropit)"

test: $(STAMP) $(KERNEL)
	$(PY) -m pytest $(PYTEST_ARGS)

# The unit tests alone: no notebook runs, no browser (tests/e2e), nothing marked slow; under 2 minutes on two cores.
# `make test` stays the one command that runs everything.
FAST := not slow and not notebook and not e2e
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "$(FAST)" --ignore=tests/e2e $(PYTEST_ARGS)

# Only the browser tests (JupyterLab in headless Chromium; .ci/install-browser.sh installs it).
test-e2e: $(STAMP) $(KERNEL)
	$(PY) -m pytest -m e2e tests/e2e -v $(PYTEST_ARGS)

# JupyterLab on notebooks/ with the kit's kernel ("dropit", registered first); as root (containers, these VMs)
# it passes --allow-root, which jupyter lab asks for there. LAB_ARGS: more options, e.g. LAB_ARGS="--no-browser --port=8899".
LAB_ARGS ?=
lab: $(STAMP) $(KERNEL)
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

bench-memory: $(STAMP)
	$(PY) benchmarks/memory.py

bench-models: $(STAMP)
	$(PY) benchmarks/models.py $(if $(QUANTIZE),--quantize $(QUANTIZE))

bench-speed: $(STAMP)
	$(PY) benchmarks/speed.py

# DropIT, its lossy companions and checkpointing: memory and step time against plain (about 20 minutes)
bench-frontier: $(STAMP)
	$(PY) benchmarks/frontier.py --json results/memory/frontier.json

# The accuracy claim study (docs/claim.md): hours on two cores. Each finished run's JSON is committed
# as it lands (COMMIT=0: not), so `make claim` on a fresh clone continues where the study stopped.
CLAIM_DIR ?= docs/claim
COMMIT    ?= 1
claim: $(STAMP) $(KERNEL)
	$(PY) -m dropit.lab.claim --out $(CLAIM_DIR) --protocol all --seeds $(or $(SEEDS),3) $(if $(filter 1 true yes,$(COMMIT)),--commit)
	test -f $(CLAIM_DIR)/mechanism.json || $(PY) -m dropit.lab.claim.mechanism --out $(CLAIM_DIR)/mechanism.json
	$(PY) -m dropit.lab.claim.figures $(CLAIM_DIR) $(CLAIM_DIR)/mechanism.json
	$(if $(filter 1 true yes,$(COMMIT)),-git add -f $(CLAIM_DIR)/mechanism.json $(CLAIM_DIR)/figures && git commit -q -m "claim: mechanism and figures" -- $(CLAIM_DIR)/mechanism.json $(CLAIM_DIR)/figures)
	mkdir -p results && $(PY) -m papermill notebooks/claim.ipynb results/claim.ipynb -p study_dir $(abspath $(CLAIM_DIR)) -p mechanism_json $(abspath $(CLAIM_DIR))/mechanism.json --cwd notebooks

# PRESET=paper: the paper's recipes; DOWNLOAD=0: never download; DRY_RUN=1: what each row needs, trains nothing
reproduce: $(STAMP)
	$(PY) -m dropit.lab.reproduce $(if $(PRESET),--preset $(PRESET)) $(if $(filter 0 false no,$(DOWNLOAD)),--no-download) \
		$(if $(filter 1 true yes,$(DRY_RUN)),--dry-run)

# The docs pages' tables, rendered again from docs/data/*.json
docs: $(STAMP)
	$(PY) docs/make_pages.py

clean:
	rm -rf results runs .pytest_cache
