"""Residual capture past one machine: `torchrun --nproc-per-node 2` on CPU (gloo) against one process, tensor for tensor.

Each rank takes its shard from the launcher's RANK / WORLD_SIZE, writes its chunks into the one run directory, meets
the other rank on a gloo barrier and rank 0 writes metadata.json. Every file of the 2-rank run must equal the
1-process run's: chunk tensors and their metadata, metadata.json and capture.json.
"""
import json, subprocess, sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from vlasteer.data import convert_libero_to_lerobot, synthetic_libero_demo, write_libero_hdf5

from conftest import entry_env, run_entry_point


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    "A LeRobot dataset of six short demos (two tasks)."
    d = tmp_path_factory.mktemp("dist")
    (d / "libero").mkdir()
    for task, sign in (("slide left", 1), ("slide right", -1)):
        demos = [synthetic_libero_demo(num_frames=12 + j, image_size=16, seed=j + (0 if sign > 0 else 7)) for j in range(3)]
        write_libero_hdf5(d / "libero" / f"{task.replace(' ', '_')}_demo.hdf5", demos, task, env_name="SlideEnv")
    return convert_libero_to_lerobot(d / "libero", "test/slide", d / "lerobot")


def capture_args(root: Path, out: Path, *extra: str) -> list[str]:
    return ["--config-name", "tiny", "--output-dir", str(out), "--lerobot-root", str(root), "--repo-id", "test/slide",
            "--layers", "0", "1", "--capture-instructions", "--batch-size", "3", "--samples-per-file", "5", "--quiet", *extra]


def files_of(run: Path) -> dict:
    "Relative path -> (tensors, metadata) of every .safetensors file, or the parsed JSON of every .json file."
    out = {}
    for p in sorted(run.rglob("*")):
        if p.suffix == ".safetensors":
            with safe_open(str(p), "pt") as f: out[str(p.relative_to(run))] = ({k: f.get_tensor(k) for k in f.keys()}, f.metadata())
        elif p.suffix == ".json": out[str(p.relative_to(run))] = json.loads(p.read_text())
    return out


@pytest.fixture(scope="module")
def runs(dataset, tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    "The same capture by one process and by torchrun with two ranks (runs at the same depth: equal relative paths)."
    base = tmp_path_factory.mktemp("runs")
    (base / "one").mkdir(); (base / "two").mkdir()
    r = run_entry_point("vlasteer.residuals", "save_residuals_main", *capture_args(dataset, base / "one" / "run"))
    assert r.returncode == 0 and "run complete" in r.stdout, r.stderr[-2000:]
    script = base / "save_residuals.py"  # what `torchrun $(which vlasteer_save_residuals)` runs
    script.write_text("from vlasteer.residuals import save_residuals_main\nsave_residuals_main()\n")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script),
           *capture_args(dataset, base / "two" / "run")]
    t = subprocess.run(cmd, capture_output=True, text=True, env=entry_env(), timeout=600)
    assert t.returncode == 0, t.stdout[-2000:] + t.stderr[-3000:]
    return base / "one" / "run", base / "two" / "run", t


def test_two_ranks_equal_one_process(runs):
    one, two, t = runs
    a, b = files_of(one), files_of(two)
    assert sorted(a) == sorted(b)
    chunks = [k for k in a if k.endswith(".safetensors")]
    assert len(chunks) == 2 * 2 * json.loads((one / "metadata.json").read_text())["num_chunks"]  # 2 groups x 2 layers per chunk
    for k in chunks:
        (ta, ma), (tb, mb) = a[k], b[k]
        assert sorted(ta) == sorted(tb) and ma == mb, k
        for name in ta: assert ta[name].dtype == tb[name].dtype and torch.equal(ta[name], tb[name]), (k, name)
    for k in ("metadata.json", "capture.json"): assert a[k] == b[k], k
    # both ranks captured; the launcher's shards, and rank 0 alone finalised
    assert t.stdout.count("run complete") == 1 and t.stdout.count("shard 1/2 done") == 1, t.stdout
    meta = a["metadata.json"]
    assert (one / meta["dataset"]["root"] / "meta" / "info.json").is_file()


def test_merge_checks_the_torchrun_run(runs):
    one, two, _ = runs
    r = run_entry_point("vlasteer.residuals", "merge_residuals_main", "--run-dir", str(two))
    assert r.returncode == 0 and "run complete" in r.stdout, r.stderr
    assert json.loads((two / "metadata.json").read_text()) == json.loads((one / "metadata.json").read_text())


def test_flags_that_contradict_the_launcher(dataset, tmp_path):
    r = run_entry_point("vlasteer.residuals", "save_residuals_main", *capture_args(dataset, tmp_path / "run", "--shard-index", "1"),
                        env={"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"})
    assert r.returncode == 1 and r.stderr.strip() == ("error: --shard-index 1 but RANK=0 (set by the launcher, e.g. torchrun); "
                                                      "drop the flags under a launcher or make them agree"), r.stderr
    assert not (tmp_path / "run").exists()
