"""Shared helpers for the command-line tests: run a console entry point in a subprocess, as an installed script would."""
import os, subprocess, sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

def entry_env(**extra: str) -> dict:
    "The environment for an entry-point subprocess: offline, one torch thread (tiny models; shared cores), this checkout first."
    return {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1",
            "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", **extra}

def console_scripts() -> dict:
    "settings.ini's console scripts: script name -> (module, function)."
    import configparser
    cp = configparser.ConfigParser(); cp.read(REPO / "settings.ini")
    out = {}
    for item in cp["DEFAULT"]["console_scripts"].split():
        name, target = item.split("=")
        out[name] = tuple(target.split(":"))
    return out

def console_module(entry: str) -> str:
    "The module that defines console entry point `entry` (a function name), as settings.ini declares it."
    mods = {fn: mod for mod, fn in console_scripts().values()}
    if entry not in mods: raise KeyError(f"no console script calls {entry}; see settings.ini console_scripts")
    return mods[entry]

def entry_command(module: str, entry: str, *args: str) -> list:
    "argv that runs `module.entry()` with `args`, the way a console script calls it."
    code = f"import sys; from {module} import {entry}; sys.argv = ['{entry}'] + sys.argv[1:]; {entry}()"
    return [sys.executable, "-c", code, *args]

def run_entry_point(module: str, entry: str, *args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    "Run `module.entry()` in a subprocess with `args` as argv; capture its output."
    return subprocess.run(entry_command(module, entry, *args), capture_output=True, text=True,
                          env={**entry_env(), **(env or {})}, timeout=timeout)


@pytest.fixture(scope="session")
def quick_main_run(tmp_path_factory) -> Path:
    "One quick main-job run through its console entry point (`vlasteer_demo --quick`), shared by the tests that only read it."
    out = tmp_path_factory.mktemp("quick_main") / "run"
    r = run_entry_point("vlasteer.main", "main_job_main", "--out", str(out), "--quick", "--quiet", timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return out
