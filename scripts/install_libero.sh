#!/usr/bin/env bash
# The real LIBERO simulator for vlasteer.sim.LiberoEnv, installed into vlasteer's environment (default
# .venv/bin/python, or the Python given as $1) at the versions pinned in constraints.txt.
# libero 0.1.1's and robosuite 1.4.0's metadata ask for training-side packages their simulator never imports
# (robomimic, hydra-core, wandb, thop, hf-egl-probe, jupytext, and opencv-python next to lerobot's
# opencv-python-headless), so those three packages go in with --no-deps, followed by what they do import.
# Safe to rerun: pip leaves pinned packages that are already there alone. System libraries (EGL / OSMesa)
# come from scripts/install_sysdeps.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
[ -f "$PY" ] && [ -x "$PY" ] || { echo "install_libero: no Python at $PY; run \`make install\` first" >&2; exit 1; }
# --no-warn-conflicts: pip would otherwise list those unused requirements as "conflicts" on every run
"$PY" -m pip install -q -c constraints.txt --no-warn-conflicts --no-deps libero robosuite bddl
"$PY" -m pip install -q -c constraints.txt --no-warn-conflicts numba matplotlib easydict future
# it must import without LIBERO's interactive first-run question (vlasteer writes a temporary config)
"$PY" - <<'EOF'
import importlib.metadata as md
from vlasteer.sim import _import_libero
_import_libero()
import libero.libero.envs, robosuite  # the simulator, its robots and its scenes
print("install_libero: " + ", ".join(f"{p} {md.version(p)}" for p in ("libero", "robosuite", "bddl", "mujoco", "numba")))
EOF
