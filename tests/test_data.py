"""Command-line behaviour of vlasteer.data: real argv (dashed flags), exit status, one-line errors, no partial output.

The notebook nbs/03_data.ipynb tests the functions; these tests run the console entry points in a subprocess.
"""
import json, os, shutil, signal, subprocess, sys, time
from pathlib import Path

import numpy as np
import pytest

from vlasteer.data import (load_obs_batch, read_libero_hdf5, read_libero_info, rot180, synthetic_libero_demo, write_libero_hdf5)

from conftest import entry_command, entry_env, run_entry_point


def run_entry(entry: str, *args: str):
    "Run `vlasteer.data.<entry>()` as a console script would, with `args` as argv."
    return run_entry_point("vlasteer.data", entry, *args)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("libero")
    write_libero_hdf5(d / "turn_on_the_stove_demo.hdf5",
                      [synthetic_libero_demo(num_frames=n, image_size=16, seed=n) for n in (10, 12)], "turn on the stove")
    write_libero_hdf5(d / "turn_off_the_stove_demo.hdf5",
                      [synthetic_libero_demo(num_frames=n, image_size=16, seed=50 + n) for n in (11,)], "turn off the stove")
    return d


def test_convert_then_dump(demo_dir, tmp_path):
    out = tmp_path / "ds"
    r = run_entry("convert_libero_main", "--input-dir", str(demo_dir), "--repo-id", "vlasteer/t", "--output-dir", str(out), "--quiet")
    assert r.returncode == 0, r.stderr
    assert "3 episodes, 33 frames, 2 tasks" in r.stdout
    r = run_entry("dump_observations_main", "--lerobot-root", str(out), "--repo-id", "vlasteer/t", "--output-dir",
                  str(tmp_path / "obs"), "--batch-size", "4", "--max-batches", "2", "--seed", "3", "--quiet")
    assert r.returncode == 0, r.stderr
    files = sorted((tmp_path / "obs").glob("batch_*.npz"))
    assert [f.name for f in files] == ["batch_00000.npz", "batch_00001.npz"]
    obs, extra = load_obs_batch(files[0])
    assert obs["image"]["base_0_rgb"].shape == (4, 16, 16, 3) and obs["image"]["base_0_rgb"].dtype == np.uint8
    assert obs["state"].dtype == np.float32 and obs["state"].shape == (4, 8)
    assert set(obs["prompt"]) == {"turn on the stove", "turn off the stove"}
    # the dumped frame equals the stored one turned upright
    src = {f.name: read_libero_hdf5(f) for f in demo_dir.glob("*.hdf5")}
    ep, t = int(extra["episode_index"][0]), int(extra["frame_index"][0])
    order = [d for name in sorted(src) for d in src[name].demos]  # episodes follow file name order
    assert np.array_equal(obs["image"]["base_0_rgb"][0], rot180(order[ep].obs["agentview_rgb"][t]))


@pytest.mark.parametrize("case", ["no_hdf5", "foreign", "exists", "no_parent"])
def test_convert_bad_input(demo_dir, tmp_path, case):
    inp, out = demo_dir, tmp_path / "ds"
    if case == "no_hdf5": inp = tmp_path / "empty"; inp.mkdir()
    if case == "foreign":
        import h5py
        inp = tmp_path / "foreign"; inp.mkdir()
        with h5py.File(inp / "x.hdf5", "w") as f: f["y"] = np.zeros(2)
    if case == "exists": out.mkdir(); (out / "keep.txt").write_text("x")
    if case == "no_parent": out = tmp_path / "missing" / "ds"
    r = run_entry("convert_libero_main", "--input-dir", str(inp), "--output-dir", str(out), "--quiet")
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    want = {"no_hdf5": "holds no .hdf5 files", "foreign": "no 'data' group", "exists": "exists; pass --overwrite",
            "no_parent": "does not exist"}[case]
    assert want in lines[0]
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temp folder left
    if case == "exists": assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_generate_convert_toy_kitchen(tmp_path):
    r = run_entry("generate_demos_main", "--output-dir", str(tmp_path / "demos"), "--num-demos", "1", "--seed", "5",
                  "--tasks", "turn on the stove", "turn_off_stove", "--image-size", "24", "--quiet")
    assert r.returncode == 0, r.stderr
    files = sorted(p.name for p in (tmp_path / "demos").iterdir())
    assert files == ["turn_off_the_stove_demo.hdf5", "turn_on_the_stove_demo.hdf5"]
    f = read_libero_hdf5(tmp_path / "demos" / "turn_on_the_stove_demo.hdf5")
    assert f.instruction == "turn on the stove" and f.demos[0].obs["agentview_rgb"].shape[1:] == (24, 24, 3)
    r = run_entry("generate_demos_main", "--output-dir", str(tmp_path / "demos"), "--num-demos", "1", "--tasks", "turn on the stove")
    assert r.returncode != 0 and r.stderr.strip().startswith("error: ") and "already holds" in r.stderr
    assert "--overwrite" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run_entry("generate_demos_main", "--output-dir", str(tmp_path / "demos"), "--num-demos", "1", "--seed", "6",
                  "--tasks", "turn on the stove", "--image-size", "24", "--quiet", "--overwrite")
    assert r.returncode == 0, r.stderr
    assert read_libero_hdf5(tmp_path / "demos" / "turn_on_the_stove_demo.hdf5").info.env_args["expert"]["seeds"] != f.info.env_args["expert"]["seeds"]


def one_error_line(r) -> str:
    "The single stderr line of a command that failed cleanly."
    assert r.returncode == 1, (r.returncode, r.stderr[-2000:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr[-2000:]
    return lines[0]


def h5_content(path: Path) -> dict:
    "Every dataset and attribute of an .hdf5 file, for comparing two files' content."
    import h5py
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            out[name] = (obj[()].tobytes() if hasattr(obj, "shape") else None,
                         {k: str(v) for k, v in obj.attrs.items()})
        f.visititems(visit)
        out["/data attrs"] = {k: str(v) for k, v in f["data"].attrs.items()}
    return out


def kill_when(proc: subprocess.Popen, ready, timeout: float = 120) -> bool:
    "SIGKILL `proc` as soon as `ready()` holds; False when it exited first."
    t0 = time.time()
    while time.time() - t0 < timeout:
        if ready(): proc.send_signal(signal.SIGKILL); proc.wait(); return True
        if proc.poll() is not None: return False
        time.sleep(0.01)
    proc.kill(); proc.wait(); raise AssertionError("the command never reached the point to kill it at")


TASKS = ["turn on the stove", "turn off the stove", "open the top drawer of the cabinet", "close the top drawer of the cabinet"]


def test_killed_generation_is_marked_refused_and_resumed(tmp_path):
    out = tmp_path / "demos"
    args = ["--output-dir", str(out), "--num-demos", "1", "--seed", "0", "--image-size", "24", "--quiet", "--tasks", *TASKS]
    p = subprocess.Popen(entry_command("vlasteer.data", "generate_demos_main", *args), env=entry_env(),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert kill_when(p, lambda: out.is_dir() and any(q.suffix == ".hdf5" for q in out.iterdir())), "finished before the kill"
    done = sorted(q.name for q in out.iterdir() if q.suffix == ".hdf5")
    assert 1 <= len(done) < len(TASKS) and (out / "INCOMPLETE.json").is_file()   # unfinished, and says so
    # the converter and the contrast builder refuse the folder, in one line naming the command that completes it
    line = one_error_line(run_entry("convert_libero_main", "--input-dir", str(out), "--output-dir", str(tmp_path / "ds"), "--quiet"))
    assert "is unfinished: vlasteer_generate_demos was stopped" in line and str(out) in line
    r = run_entry_point("vlasteer.contrast", "build_contrasting_pairs_main", "--input-dir", str(out), "--task-a-text", TASKS[0],
                        "--task-b-text", TASKS[1], "--output", str(tmp_path / "m.json"))
    assert "is unfinished" in one_error_line(r)
    assert not (tmp_path / "ds").exists() and not (tmp_path / "m.json").exists()
    # other settings are refused; the same command completes the run and keeps the finished files
    assert "with other settings (num_demos=1)" in one_error_line(run_entry("generate_demos_main", *[a if a != "1" else "2" for a in args]))
    kept = {n: (out / n).stat().st_mtime_ns for n in done}
    r = run_entry("generate_demos_main", *args)
    assert r.returncode == 0, r.stderr
    assert sorted(q.name for q in out.iterdir()) == sorted(f"{'_'.join(t.split())}_demo.hdf5" for t in TASKS)  # mark, temp files gone
    assert {n: (out / n).stat().st_mtime_ns for n in done} == kept
    # the result is what an uninterrupted run writes
    r = run_entry("generate_demos_main", *["--output-dir", str(tmp_path / "whole"), *args[2:]])
    assert r.returncode == 0, r.stderr
    for q in sorted(out.iterdir()): assert h5_content(q) == h5_content(tmp_path / "whole" / q.name), q.name
    r = run_entry("convert_libero_main", "--input-dir", str(out), "--output-dir", str(tmp_path / "ds"), "--quiet")
    assert r.returncode == 0, r.stderr


def test_killed_conversion_is_cleaned_by_the_next_run(demo_dir, tmp_path):
    out = tmp_path / "ds"
    args = ["--input-dir", str(demo_dir), "--repo-id", "vlasteer/t", "--output-dir", str(out), "--quiet"]
    p = subprocess.Popen(entry_command("vlasteer.data", "convert_libero_main", *args), env=entry_env(),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = lambda: [q for q in tmp_path.iterdir() if q.name.startswith(".ds.partial-")]
    assert kill_when(p, lambda: bool(partial())), "finished before the kill"
    assert not out.exists() and len(partial()) == 1                # the half-written dataset is hidden, not in place
    r = run_entry("convert_libero_main", *args)
    assert r.returncode == 0, r.stderr
    assert [q.name for q in tmp_path.iterdir()] == ["ds"]            # the killed run's temporary folder is gone


def test_overwrite_rule(demo_dir, tmp_path):
    out, obs = tmp_path / "ds", tmp_path / "obs"
    conv = ["--input-dir", str(demo_dir), "--repo-id", "vlasteer/t", "--output-dir", str(out), "--quiet"]
    dump = ["--lerobot-root", str(out), "--repo-id", "vlasteer/t", "--output-dir", str(obs), "--batch-size", "4", "--max-batches", "1", "--quiet"]
    assert run_entry("convert_libero_main", *conv).returncode == 0
    assert run_entry("dump_observations_main", *dump).returncode == 0
    (out / "meta" / "mine.txt").write_text("x")
    for entry, args, target in (("convert_libero_main", conv, out), ("dump_observations_main", dump, obs)):
        before = sorted(str(q.relative_to(target)) for q in target.rglob("*"))
        line = one_error_line(run_entry(entry, *args))
        assert f"{target} exists; pass --overwrite to replace it" in line, line
        assert sorted(str(q.relative_to(target)) for q in target.rglob("*")) == before  # untouched
        r = run_entry(entry, *args, "--overwrite")
        assert r.returncode == 0, r.stderr
    assert not (out / "meta" / "mine.txt").exists()                  # replaced whole
    assert sorted(q.name for q in tmp_path.iterdir()) == ["ds", "obs"]


@pytest.fixture(scope="module")
def dataset(demo_dir, tmp_path_factory) -> dict:
    "The demos converted once, and one observation batch dumped from them (the damaged-input cases damage copies)."
    from vlasteer.data import convert_libero_to_lerobot, dump_observations
    d = tmp_path_factory.mktemp("converted")
    root = convert_libero_to_lerobot(demo_dir, "vlasteer/t", d / "ds")
    return dict(root=root, batch=dump_observations(root, "vlasteer/t", d / "obs", batch_size=4, max_batches=1)[0])


@pytest.mark.parametrize("case", ["npz_truncated", "npz_empty", "parquet_truncated", "info_truncated", "info_empty"])
def test_damaged_inputs_are_one_line_naming_the_file(dataset, tmp_path, case):
    if case.startswith("npz"):
        bad = tmp_path / "batch_00000.npz"
        b = dataset["batch"].read_bytes()
        bad.write_bytes(b[: len(b) // 2] if case == "npz_truncated" else b"")
        code = f"from vlasteer.data import load_obs_batch; from vlasteer.cli import cli_errors\nwith cli_errors(): load_obs_batch({str(bad)!r})"
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=entry_env())
        assert str(bad) in one_error_line(r) and "vlasteer_dump_observations" in r.stderr
        return
    ds, obs = tmp_path / "ds", tmp_path / "obs"
    shutil.copytree(dataset["root"], ds)
    bad = ds / {"parquet_truncated": "data/chunk-000/file-000.parquet"}.get(case, "meta/info.json")
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2] if case.endswith("truncated") else b"")
    r = run_entry("dump_observations_main", "--lerobot-root", str(ds), "--repo-id", "vlasteer/t", "--output-dir", str(obs), "--quiet")
    line = one_error_line(r)   # one line: no log lines of lerobot or datasets around it
    assert str(bad) in line and "vlasteer_convert_libero" in line, line
    assert not obs.exists()


def test_hdf5_damaged_anywhere_is_one_line_naming_the_file(demo_dir, tmp_path):
    "256 random bytes written over the file at 40 places: each reader either reads it or fails in one line naming it."
    from vlasteer.contrast import hdf5_task_episodes
    src = (demo_dir / "turn_on_the_stove_demo.hdf5").read_bytes()
    rng, errors = np.random.default_rng(0), []
    readers = {"read_libero_info": read_libero_info, "read_libero_hdf5": read_libero_hdf5,
               "hdf5_task_episodes": lambda p: hdf5_task_episodes(p, "states")}
    for k in range(40):
        d = tmp_path / f"c{k}"; d.mkdir()
        bad = d / "turn_on_the_stove_demo.hdf5"
        b = bytearray(src); off = len(src) * k // 40; b[off: off + 256] = rng.bytes(256); bad.write_bytes(bytes(b))
        for name, fn in readers.items():
            try: fn(bad)
            except Exception as e:
                errors.append(e)
                assert isinstance(e, (ValueError, OSError)), (k, name, type(e).__name__, str(e))
                assert str(bad) in str(e) and "\n" not in str(e), (k, name, str(e))
    assert len(errors) > 10   # the damage is seen, not only survived


def test_non_finite_state_is_refused_naming_the_file(dataset, tmp_path):
    "A dataset whose `state` holds a NaN (written by another tool): dumping its frames names the data file."
    import pyarrow as pa, pyarrow.parquet as pq
    ds = tmp_path / "ds"
    shutil.copytree(dataset["root"], ds)
    f = ds / "data" / "chunk-000" / "file-000.parquet"
    t = pq.read_table(f)
    states = t.column("state").to_pylist(); states[5][0] = float("nan")
    field = t.schema.field("state")
    pq.write_table(t.set_column(t.schema.get_field_index("state"), field, pa.array(states, field.type)), f)
    r = run_entry("dump_observations_main", "--lerobot-root", str(ds), "--repo-id", "vlasteer/t", "--output-dir", str(tmp_path / "obs"),
                  "--max-batches", "0", "--quiet")
    line = one_error_line(r)
    assert f"frame 5 (episode 0, in {f}) has a NaN or inf state" in line, line
    assert not (tmp_path / "obs").exists()
