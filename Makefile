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

.PHONY: demo test install sysdeps lab bench clean

$(STAMP): constraints.txt settings.ini setup.py scripts/install_sysdeps.sh
	bash scripts/install_sysdeps.sh
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## The main job on the embedded default.
demo: $(STAMP)
	mkdir -p runs
	$(BIN)/vlasteer_demo --out runs/demo

## Every notebook (nbdev_test) plus the pytest suite.
# notebooks run two at a time, so each torch gets one thread (two threads per process on two cores thrash)
test: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/nbdev_test --n_workers 2 --timing
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q tests

## JupyterLab on localhost for the explorers.
lab: $(STAMP)
	$(BIN)/jupyter lab --no-browser --ip 127.0.0.1 nbs

## Benchmarks (figures go to stdout and bench/results/).
bench: $(STAMP)
	$(BIN)/python bench/hook_overhead.py
	$(BIN)/python bench/sim_speed.py
	$(BIN)/python bench/cluster_scale.py

clean:
	rm -rf $(VENV) _docs _proc runs
