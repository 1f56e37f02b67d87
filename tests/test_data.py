"""Command-line behaviour of vlasteer.data: real argv (dashed flags), exit status, one-line errors, no partial output.

The notebook nbs/03_data.ipynb tests the functions; these tests run the console entry points in a subprocess.
"""
import os, subprocess, sys
from pathlib import Path

import numpy as np
import pytest

from vlasteer.data import (load_obs_batch, read_libero_hdf5, rot180, synthetic_libero_demo, write_libero_hdf5)

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
    want = {"no_hdf5": "holds no .hdf5 files", "foreign": "no 'data' group", "exists": "not empty", "no_parent": "does not exist"}[case]
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
    assert len(r.stderr.strip().splitlines()) == 1
