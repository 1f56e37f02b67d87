"""Package-level checks that notebooks express badly: import cost, CLIs as subprocesses, README sync."""
import json, os, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=600, **kw)

def test_import_is_light():
    r = run([PY, "-c", "import sys, time; t = time.perf_counter(); import vlasteer; "
                       "print(time.perf_counter() - t, 'torch' in sys.modules)"])
    assert r.returncode == 0, r.stderr
    secs, torch_loaded = r.stdout.split()
    assert float(secs) < 2.0 and torch_loaded == "False", r.stdout

def test_world_demo_cli_writes_summary(tmp_path):
    exe = Path(PY).with_name("vlasteer_world_demo")
    r = run([str(exe), "--out", str(tmp_path / "demo"), "--num-demos", "1", "--eval-seeds", "1"])
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["dataset"]["episodes"] == 6 and summary["dataset"]["frames"] > 6
    assert len(summary["success"]) == 6 and all(v["n"] == 1 for v in summary["success"].values())
    towers = {h["hook"].split(".")[0] for h in summary["hooks"]}
    assert towers == {"vision", "vlm", "expert"}
    assert all(h["firings"] == 10 for h in summary["hooks"] if h["hook"].startswith("expert"))  # one per denoising step
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]  # no temp folders left behind

def test_world_demo_cli_bad_input_fails_cleanly(tmp_path):
    exe = Path(PY).with_name("vlasteer_world_demo")
    r = run([str(exe), "--out", str(tmp_path / "demo"), "--num-demos", "0"])
    assert r.returncode != 0 and "--num-demos" in r.stderr
    r = run([str(exe), "--out", str(tmp_path / "missing" / "demo")])
    assert r.returncode != 0 and "does not exist" in r.stderr
    assert list(tmp_path.iterdir()) == []

def test_readme_matches_index():
    r = run([PY, "scripts/make_readme.py", "--check"])
    assert r.returncode == 0, r.stdout

def test_constraints_pin_every_package_once():
    names = [l.split("==")[0].strip().lower() for l in (ROOT / "constraints.txt").read_text().splitlines()
             if l.strip() and not l.startswith("#")]
    assert len(names) == len(set(names))
    assert all("==" in l for l in (ROOT / "constraints.txt").read_text().splitlines() if l.strip() and not l.startswith("#"))
