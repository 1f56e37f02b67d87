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

def unbound_names(source: str) -> list[tuple[int, str]]:
    "(line, name) of every name a module reads that it never binds (defines, assigns, imports) nor is a builtin."
    import ast, builtins
    t = ast.parse(source)
    bound = set(dir(builtins)) | {"__file__", "__name__", "__doc__", "__spec__", "__path__", "__loader__", "__package__"}
    for n in ast.walk(t):
        if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del)): bound.add(n.id)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)): bound.add(n.name)
        elif isinstance(n, ast.arg): bound.add(n.arg)
        elif isinstance(n, (ast.Import, ast.ImportFrom)): bound.update((a.asname or a.name).split(".")[0] for a in n.names)
        elif isinstance(n, ast.ExceptHandler) and n.name: bound.add(n.name)
        elif isinstance(n, (ast.Global, ast.Nonlocal)): bound.update(n.names)
        elif isinstance(n, (ast.MatchAs, ast.MatchStar)) and n.name: bound.add(n.name)
        elif isinstance(n, ast.MatchMapping) and n.rest: bound.add(n.rest)
    seen, out = set(), []
    for n in ast.walk(t):
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and n.id not in bound and n.id not in seen:
            seen.add(n.id); out.append((n.lineno, n.id))
    return sorted(out)

def test_unbound_names_check_finds_them():
    assert unbound_names("import os\ndef f(x):\n    return os.sep + x + load_default_policy()\n") == [(3, "load_default_policy")]
    assert unbound_names("from a import b as c\nclass K: pass\ntry: c(K)\nexcept E as e: print(e)\n") == [(4, "E")]

def test_exported_modules_bind_every_name_they_read():
    "A name imported only in a hidden notebook cell passes nbdev_test and still breaks the console script that reads it."
    bad = [f"vlasteer/{p.name}:{line}: {name}" for p in sorted((ROOT / "vlasteer").glob("*.py")) if p.name != "_modidx.py"
           for line, name in unbound_names(p.read_text())]
    assert not bad, "names read but never defined or imported:\n" + "\n".join(bad)


def test_console_scripts_resolve():
    "Every console script settings.ini declares names a function its module defines (a moved CLI must move its entry)."
    import importlib
    from conftest import console_scripts
    bad = []
    for name, (mod, fn) in console_scripts().items():
        try: ok = callable(getattr(importlib.import_module(mod), fn))
        except (ImportError, AttributeError) as e: ok, fn = False, f"{fn} ({e})"
        if not ok: bad.append(f"{name} -> {mod}:{fn}")
    assert bad == [], bad
