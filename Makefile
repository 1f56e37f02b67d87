# vlasteer: every target sets itself up (a .venv pinned by constraints.txt) on a fresh clone.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.vlasteer-installed
export MUJOCO_GL ?= egl
export PYOPENGL_PLATFORM ?= $(MUJOCO_GL)
export TOKENIZERS_PARALLELISM := false
export HF_HUB_OFFLINE := 1
export HF_DATASETS_CACHE ?= $(CURDIR)/.cache/hf_datasets

.PHONY: demo test install libero sysdeps lab bench clean docs docs-check outputs

# the pinned stack (CUDA builds of torch and torchvision, see constraints.txt) takes about 9 GB in .venv
NEED_GB ?= 12
$(STAMP): constraints.txt settings.ini setup.py scripts/install_sysdeps.sh
	@free=$$(df -Pk . | awk 'NR==2 {print int($$4 / 1048576)}'); if [ "$$free" -lt "$(NEED_GB)" ] && [ ! -x $(BIN)/python ]; then \
	  echo "install: only $$free GB free here; the environment needs about $(NEED_GB) GB (free some space, or NEED_GB=... to override)" >&2; exit 1; fi
	bash scripts/install_sysdeps.sh
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## The real LIBERO simulator (libero, robosuite) in the same .venv, for vlasteer.sim.LiberoEnv.
LIBERO_STAMP := $(VENV)/.vlasteer-libero-installed
$(LIBERO_STAMP): $(STAMP) constraints.txt scripts/install_libero.sh
	bash scripts/install_libero.sh $(BIN)/python
	touch $(LIBERO_STAMP)

libero: $(LIBERO_STAMP)

# LIBERO's scene assets: ../shared/libero-assets beside the clone, unless VLASTEER_LIBERO_ASSETS names them.
# `make test` runs the `#| libero` cells and tests/test_libero.py where they exist, and always in CI (which then needs them).
export VLASTEER_LIBERO_ASSETS ?= $(firstword $(wildcard $(abspath $(CURDIR)/../shared/libero-assets) $(abspath $(CURDIR)/../../shared/libero-assets)) $(abspath $(CURDIR)/../shared/libero-assets))
LIBERO_FLAGS := $(if $(or $(CI),$(wildcard $(VLASTEER_LIBERO_ASSETS))),--flags libero)

## The main job on the embedded default.
demo: $(STAMP)
	mkdir -p runs
	$(BIN)/vlasteer_demo --out runs/demo

## Every notebook (nbdev_test) plus the pytest suite, the LIBERO simulator's included.
# notebooks run two at a time, so each torch gets one thread (two threads per process on two cores thrash)
test: $(STAMP) $(LIBERO_STAMP)
	@$(if $(LIBERO_FLAGS),,echo "test: no LIBERO assets at $(VLASTEER_LIBERO_ASSETS); the #| libero cells and tests/test_libero.py are skipped")
	OMP_NUM_THREADS=1 $(BIN)/nbdev_test --n_workers 2 --timing $(LIBERO_FLAGS)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q tests

## JupyterLab on localhost for the explorers.
lab: $(STAMP)
	$(BIN)/jupyter lab --no-browser --ip 127.0.0.1 $(if $(filter 0,$(shell id -u)),--allow-root) nbs

## The docs site offline (nbdev's processing, then plain HTML in _docs_html/; `nbdev_docs` where Quarto is installed).
docs: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python scripts/docs_check.py --out _docs_html

## The docs site and the explorers checked in headless chromium (screenshots in test-artifacts/).
docs-check: docs
	VLASTEER_DOCS_PREBUILT=1 OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q tests/test_docs.py tests/test_lab.py tests/test_notebook_outputs.py

## Re-run notebooks in place so their committed outputs are fresh (NB=nbs/05_clusters.ipynb for one).
outputs: $(STAMP)
	$(BIN)/python scripts/fill_outputs.py $(NB)

## Benchmarks (figures go to stdout and bench/results/); bench/peers.py also needs nnsight (pinned in constraints.txt).
bench: $(STAMP)
	$(BIN)/python -m pip install -q -c constraints.txt nnsight
	$(BIN)/python bench/hook_overhead.py
	$(BIN)/python bench/peers.py
	$(BIN)/python bench/sim_speed.py
	$(BIN)/python bench/cluster_scale.py

clean:
	rm -rf $(VENV) _docs _proc _docs_html test-artifacts runs scripts/docs_assets/node_modules
