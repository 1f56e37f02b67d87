"""Replay the provenance of a quick main-job run: every recorded command, in order, through its console entry point.

One quick run of the main job (`vlasteer_demo --quick`) records in `provenance.json` the shell command of each step,
with `$RUN` for the run folder. The replay runs each command in a fresh folder (`$RUN` = that folder). An input a command
names is taken from the replay folder when an earlier replayed command wrote it, and otherwise copied from the main
run (files the main job writes without a command: `contrast/concept_labels.json`, `contrast/concept_map_all.json`,
`directions/pairs_layerNN.json`, `steering/config.json`). Every output is then compared with the main run's: tensors
equal (safetensors, npz, hdf5, parquet), JSON equal. In JSON, paths differ only by the run folder, so both folders
are written `$RUN` before the comparison; the keys in `IGNORED_KEYS` are wall-clock times, which legitimately differ.
The folder an output goes in is created first (every command asks for an existing parent folder, as its error
says). A command that fails is reported and its outputs are copied from the main run, so the commands after it are
still checked; the test lists every failure at the end.
"""
import configparser, fnmatch, glob, json, math, os, shlex, shutil, subprocess, sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, entry_env, run_entry_point

# flags whose value is a path the command writes (a file, or a folder of files); every other $RUN path is an input
OUTPUT_FLAGS = {"--output-dir", "--output-path", "--output", "--out", "--output-root", "--tsne-path"}
# JSON keys whose values legitimately differ between two runs with the same settings: wall-clock measurements (times,
# rates), and
# the `fingerprint` Hugging Face datasets writes into a parquet file's schema metadata (a random cache key per write)
IGNORED_KEYS = {"seconds", "seconds_total", "started", "finished", "created", "elapsed_s", "wall_s", "steps_per_s", "fingerprint"}


from conftest import console_scripts  # settings.ini's console scripts: name -> (module, function)


@pytest.fixture(scope="module")
def main_run(quick_main_run) -> Path:
    "The shared quick main-job run (conftest.py), read only."
    return quick_main_run


def recorded_commands(run: Path) -> list[tuple[str, str]]:
    "(step, command) of every command recorded in the run's provenance.json, in order."
    prov = json.loads((run / "provenance.json").read_text())
    return [(step, c) for step, rec in prov["steps"].items() for c in rec["commands"]]


def run_paths(argv: list[str]) -> list[tuple[str | None, str]]:
    "(flag, value) of every `$RUN/...` argument of a command (flag None for a positional one)."
    out, flag = [], None
    for a in argv:
        if a.startswith("--"): flag = a; continue
        if a.startswith("$RUN"): out.append((flag, a))
    return out


def rel(value: str) -> str:
    return value[len("$RUN"):].lstrip("/")


def files_under(p: Path) -> list[Path]:
    "The files at `p` (the file itself, or every file of the folder, hidden ones included) relative to `p`."
    if p.is_file(): return [Path("")]
    return sorted(f.relative_to(p) for f in p.rglob("*") if f.is_file()) if p.is_dir() else []


def expand(root: Path, value: str) -> list[Path]:
    "The paths a `$RUN/...` argument names under `root` (a glob may name several)."
    r = rel(value)
    if any(ch in r for ch in "*?["): return sorted(Path(p) for p in glob.glob(str(root / r)))
    return [root / r]


def copy_in(src_root: Path, dst_root: Path, value: str) -> list[str]:
    "Copy what `value` names from `src_root` to `dst_root` where it is absent; the relative paths copied."
    copied = []
    for src in expand(src_root, value):
        dst = dst_root / src.relative_to(src_root)
        if dst.exists() or not src.exists(): continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(src, dst) if src.is_dir() else shutil.copy2(src, dst)
        copied.append(str(src.relative_to(src_root)))
    return copied


# ---- comparing outputs --------------------------------------------------------------------------------------------

def norm_json(o, roots: tuple[str, ...]):
    "A JSON value with each run folder written `$RUN` and the wall-clock keys dropped."
    if isinstance(o, dict): return {k: norm_json(v, roots) for k, v in o.items() if k not in IGNORED_KEYS}
    if isinstance(o, list): return [norm_json(v, roots) for v in o]
    if isinstance(o, str):
        for r in roots: o = o.replace(r, "$RUN")
        return o
    return o


def first_diff(a, b, where: str = "") -> str | None:
    "Where two JSON values first differ (None when equal; NaN equals NaN)."
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b): return f"{where or '.'}: keys differ {sorted(set(a) ^ set(b))}"
        for k in a:
            d = first_diff(a[k], b[k], f"{where}.{k}")
            if d: return d
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b): return f"{where}: lengths {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            d = first_diff(x, y, f"{where}[{i}]")
            if d: return d
        return None
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b): return None
    return None if (a == b and type(a) == type(b)) else f"{where}: {a!r} != {b!r}"


def compare_file(a: Path, b: Path, roots: tuple[str, ...]) -> str | None:
    "None when the replayed file `a` holds what the main run's `b` holds, else what differs."
    suf = a.suffix
    if suf == ".json":
        return first_diff(norm_json(json.loads(a.read_text()), roots), norm_json(json.loads(b.read_text()), roots))
    if suf == ".safetensors":
        from safetensors import safe_open
        import torch
        with safe_open(str(a), "pt") as fa, safe_open(str(b), "pt") as fb:
            if set(fa.keys()) != set(fb.keys()): return f"tensor names differ {sorted(set(fa.keys()) ^ set(fb.keys()))}"
            for k in fa.keys():
                x, y = fa.get_tensor(k), fb.get_tensor(k)
                if x.dtype != y.dtype or x.shape != y.shape or not torch.equal(x, y): return f"tensor {k} differs"
            d = first_diff(norm_json(fa.metadata() or {}, roots), norm_json(fb.metadata() or {}, roots))
            return f"metadata {d}" if d else None
    if suf == ".npz":
        with np.load(a, allow_pickle=False) as za, np.load(b, allow_pickle=False) as zb:
            if sorted(za.files) != sorted(zb.files): return f"arrays differ {sorted(set(za.files) ^ set(zb.files))}"
            bad = [k for k in za.files if za[k].dtype != zb[k].dtype or not np.array_equal(za[k], zb[k])]
            return f"arrays {bad} differ" if bad else None
    if suf == ".hdf5":
        import h5py
        def items(f):
            out = {}
            def visit(name, obj):
                attrs = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in obj.attrs.items()}
                out[name] = (obj[()] if isinstance(obj, h5py.Dataset) else None, attrs)
            f.visititems(visit)
            out["/"] = (None, {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in f.attrs.items()})
            return out
        with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
            ia, ib = items(fa), items(fb)
            if set(ia) != set(ib): return f"groups/datasets differ {sorted(set(ia) ^ set(ib))[:5]}"
            for k in ia:
                (xa, aa), (xb, ab) = ia[k], ib[k]
                if (xa is None) != (xb is None) or (xa is not None and not np.array_equal(xa, xb)): return f"dataset {k} differs"
                if aa != ab: return f"attributes of {k} differ"
        return None
    if suf == ".parquet":
        import pyarrow.parquet as pq
        ta, tb = pq.read_table(a), pq.read_table(b)
        if not ta.equals(tb): return "parquet tables differ"
        meta = lambda t: {k.decode(): json.loads(v) for k, v in (t.schema.metadata or {}).items()}
        d = first_diff(norm_json(meta(ta), roots), norm_json(meta(tb), roots))
        return f"parquet metadata {d}" if d else None
    if suf == ".html":  # plotly writes a fresh random div id into every figure: compare the page without them
        import re
        strip = lambda p: re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "ID", p.read_text())
        return None if strip(a) == strip(b) else "HTML differs (beyond plotly's random div ids)"
    return None if a.read_bytes() == b.read_bytes() else "bytes differ"


def compare_output(replay: Path, run: Path, value: str, copied: set[str]) -> list[str]:
    "The differences between what the replay and the main run hold at one output `value`."
    a, b = replay / rel(value), run / rel(value)
    if not b.exists(): return [f"{value}: the main run has no such output"]
    if not a.exists(): return [f"{value}: the replayed command did not write it"]
    fa, fb = set(files_under(a)), set(files_under(b))
    base = rel(value)
    name = lambda f: str(Path(base) / f) if str(f) not in ("", ".") else base
    fa = {f for f in fa if name(f) not in copied}
    fb = {f for f in fb if name(f) not in copied}
    out = [f"{name(f)}: only in the replay" for f in sorted(fa - fb)] + [f"{name(f)}: only in the main run" for f in sorted(fb - fa)]
    for f in sorted(fa & fb):
        d = compare_file(a / f if str(f) else a, b / f if str(f) else b, (str(replay), str(run)))
        if d: out.append(f"{name(f)}: {d}")
    return out


# ---- the replay ---------------------------------------------------------------------------------------------------

def replay(run: Path, folder: Path) -> tuple[list[dict], list[str]]:
    "Run every recorded command of `run` in order with `$RUN` = `folder`; (one record per command, every failure)."
    scripts, records, failures = console_scripts(), [], []
    folder.mkdir()
    copied: set[str] = set()
    for step, cmd in recorded_commands(run):
        argv = shlex.split(cmd.replace("$RUN", "\x00RUN"))
        argv = [a.replace("\x00RUN", "$RUN") for a in argv]
        paths = run_paths(argv)
        inputs = [v for f, v in paths if f not in OUTPUT_FLAGS]
        outputs = [v for f, v in paths if f in OUTPUT_FLAGS]
        for v in inputs: copied.update(copy_in(run, folder, v))
        for v in outputs: (folder / rel(v)).parent.mkdir(parents=True, exist_ok=True)  # the commands want their output's folder to exist
        args = [a.replace("$RUN", str(folder)) for a in argv[1:]]
        if argv[0] in scripts:
            r = run_entry_point(*scripts[argv[0]], *args, timeout=900)
        elif argv[0] == "python":
            r = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=entry_env(), timeout=900, cwd=folder)
        else:
            failures.append(f"[{step}] {argv[0]}: not a console script of settings.ini nor python"); continue
        rec = dict(step=step, command=cmd, returncode=r.returncode, copied_inputs=sorted(copied), diffs=[])
        records.append(rec)
        if r.returncode != 0:
            tail = (r.stderr.strip().splitlines() or ["(no output)"])[-1]
            failures.append(f"[{step}] {argv[0]} exited {r.returncode}: {tail}")
            for v in outputs:  # what it should have written, so the later commands can still be checked
                for p in expand(folder, v):
                    if p.exists(): shutil.rmtree(p) if p.is_dir() else p.unlink()
                copied.update(copy_in(run, folder, v))
            continue
        for v in outputs:
            rec["diffs"] += compare_output(folder, run, v, copied)
        failures += [f"[{step}] {argv[0]}: {d}" for d in rec["diffs"]]
    return records, failures


def test_replay_every_recorded_command(main_run, tmp_path):
    cmds = recorded_commands(main_run)
    scripts = [shlex.split(c)[0] for _, c in cmds]
    # the main job records a command for each pipeline step, and they use the package's console scripts
    for want in ("vlasteer_generate_demos", "vlasteer_convert_libero", "vlasteer_dump_observations", "vlasteer_ffn_probe",
                 "vlasteer_cluster", "vlasteer_build_contrasting_pairs", "vlasteer_map_concept_samples",
                 "vlasteer_save_residuals", "vlasteer_slice_residuals", "vlasteer_train_sae", "vlasteer_sae_directions",
                 "vlasteer_localize"):
        assert want in scripts, (want, scripts)
    records, failures = replay(main_run, tmp_path / "replay")
    assert len(records) == len(cmds)
    assert not failures, "\n".join(failures)


def test_recorded_paths_exist(main_run):
    "Every path a recorded command names (input or output) exists in the finished run."
    missing = []
    for step, cmd in recorded_commands(main_run):
        for flag, v in run_paths(shlex.split(cmd)):
            if not expand(main_run, v) or not all(p.exists() for p in expand(main_run, v)): missing.append(f"[{step}] {flag} {v}")
    assert not missing, "recorded paths absent from the run:\n" + "\n".join(missing)


def test_compare_catches_differences(tmp_path):
    "The comparison itself: equal content passes, a changed tensor, JSON value or extra file is reported."
    import torch
    from safetensors.torch import save_file
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        (d / "out").mkdir(parents=True)
        save_file({"x": torch.arange(4.0)}, str(d / "out" / "t.safetensors"))
        (d / "out" / "m.json").write_text(json.dumps({"root": f"{d}/data", "seconds": 1.0 if d == a else 2.0, "v": [1, 2]}))
    assert compare_output(a, b, "$RUN/out", set()) == []  # paths written $RUN, wall-clock keys ignored
    save_file({"x": torch.arange(4.0) + 1e-6}, str(b / "out" / "t.safetensors"))
    (b / "out" / "m.json").write_text(json.dumps({"root": f"{b}/data", "v": [1, 3]}))
    (b / "out" / "extra.txt").write_text("x")
    diffs = compare_output(a, b, "$RUN/out", set())
    assert any("tensor x differs" in d for d in diffs) and any(".v[1]: 2 != 3" in d for d in diffs)
    assert any("extra.txt: only in the main run" in d for d in diffs)
