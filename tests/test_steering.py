"""Command-line behaviour of vlasteer.steering (`vlasteer_steer`): real argv, exit status, one-line errors, resumable output.

The notebook nbs/09_steering.ipynb tests the functions; these run the console entry point in a subprocess on the
embedded default policy with a few short episodes.
"""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from conftest import console_module, run_entry_point

WIDTH = 128  # the default policy's VLM width (checked below against its config)


def run_steer(*args: str):
    return run_entry_point(console_module("steer_main"), "steer_main", *args)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    from vlasteer.checkpoints import load_default_policy
    assert load_default_policy().config.vlm.width == WIDTH
    d = tmp_path_factory.mktemp("steer")
    v = torch.from_numpy(np.random.default_rng(0).standard_normal(WIDTH).astype(np.float32))
    save_file({"direction": v, "raw_difference": -v}, str(d / "dir.safetensors"))
    save_file({"direction": torch.ones(WIDTH + 3)}, str(d / "wide.safetensors"))
    (d / "clusters.json").write_text(json.dumps({"tower": "vlm", "clusters": [{"cluster_id": 2, "members": [[0, 1], [1, 5]], "token_summary": []}]}))
    def spec(name, **edit):
        (d / f"{name}.json").write_text(json.dumps({"name": name, "edits": [edit]}))
        return str(d / f"{name}.json")
    spec("good", kind="add", layers=[0], tokens="instruction", direction="dir.safetensors:raw_difference", unit_norm=8.0, unit="test")
    spec("unknown_hook", kind="add", layers=[0], site="hook_resid_sideways", direction="dir.safetensors")
    spec("wrong_width", kind="add", layers=[0], direction="wide.safetensors")
    spec("no_cluster", kind="set_neurons", cluster={"path": "clusters.json", "cluster_id": 9}, alpha=3.0)
    spec("bad_kind", kind="teleport", layers=[0])
    return d


@pytest.mark.parametrize("name, message", [
    ("unknown_hook", "hook_resid_sideways"),
    ("wrong_width", f"has width {WIDTH + 3} but vlm.blocks.0.hook_resid_post has width {WIDTH}"),
    ("no_cluster", "cluster 9 is not in"),
    ("bad_kind", "unknown edit kind 'teleport'"),
])
def test_bad_spec_is_one_line_error(work, name, message):
    r = run_steer("--spec", str(work / f"{name}.json"), "--tasks", "turn on the stove", "--alphas", "1", "--out", str(work / f"out_{name}"))
    assert r.returncode != 0
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and message in err[0], r.stderr
    assert not (work / f"out_{name}" / "cells").exists() or not any((work / f"out_{name}" / "cells").iterdir())


def test_missing_inputs(work):
    r = run_steer("--spec", str(work / "nope.json"), "--tasks", "turn on the stove", "--alphas", "1", "--out", str(work / "o"))
    assert r.returncode != 0 and "no steering spec at" in r.stderr
    r = run_steer("--spec", str(work / "good.json"), "--tasks", "turn on the stove", "--alphas", "1", "--out", str(work / "no" / "such" / "o"))
    assert r.returncode != 0 and "does not exist" in r.stderr
    r = run_steer("--spec", str(work / "good.json"), "--tasks", "turn on the stove", "--alphas", "nan", "--out", str(work / "o2"))
    assert r.returncode != 0 and "finite" in r.stderr


def test_runs_and_resumes(work):
    out = work / "run"
    args = ("--spec", str(work / "good.json"), "--tasks", "turn on the stove", "--alphas", "0", "1", "--seeds", "2",
            "--max-steps", "8", "--out", str(out))
    r = run_steer(*args)
    assert r.returncode == 0, r.stderr
    assert "units: add: α × test" in r.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert [(row["alpha"], row["n"]) for row in summary["rows"]] == [(0.0, 2), (1.0, 2)]
    cells = sorted((out / "cells").iterdir())
    assert len(cells) == 2
    before = {f.name: f.read_text() for f in cells}
    r = run_steer(*args)  # every cell on disk: nothing re-run, same files
    assert r.returncode == 0, r.stderr
    assert {f.name: f.read_text() for f in (out / "cells").iterdir()} == before


def test_changed_direction_file_is_not_reported_as_fresh(work):
    "Resuming after a direction file's content changed under the same path refuses, instead of reusing the old cells."
    v = torch.from_numpy(np.random.default_rng(1).standard_normal(WIDTH).astype(np.float32))
    save_file({"direction": v, "raw_difference": -v}, str(work / "moving.safetensors"))
    (work / "moving.json").write_text(json.dumps({"name": "moving", "edits": [dict(kind="add", layers=[0], tokens="instruction",
                                                                                  direction="moving.safetensors:raw_difference", unit_norm=8.0)]}))
    args = ("--spec", str(work / "moving.json"), "--tasks", "turn on the stove", "--alphas", "1", "--seeds", "1", "--max-steps", "4",
            "--out", str(work / "moving_run"))
    assert run_steer(*args).returncode == 0
    save_file({"direction": 2 * v, "raw_difference": -2 * v}, str(work / "moving.safetensors"))  # same path, other content
    r = run_steer(*args)
    assert r.returncode == 1 and "computed from other contents" in r.stderr.strip().splitlines()[-1], r.stderr


def test_checkpoint_without_statistics_needs_a_flag(work):
    "A checkpoint without normalisation statistics is refused in one line until --norm-stats or --no-norm-stats is given."
    import shutil
    from vlasteer.policy import ASSETS
    ck = work / "nostats"
    shutil.copytree(ASSETS / "default_policy", ck); (ck / "norm_stats.json").unlink()
    args = ("--spec", str(work / "good.json"), "--tasks", "turn on the stove", "--alphas", "0", "--seeds", "1", "--max-steps", "2",
            "--checkpoint", str(ck))
    r = run_steer(*args, "--out", str(work / "ns_refused"))
    err = r.stderr.strip().splitlines()
    assert r.returncode == 1 and "--norm-stats" in err[-1] and "--no-norm-stats" in err[-1], r.stderr
    assert not (work / "ns_refused").exists()
    assert run_steer(*args, "--no-norm-stats", "--out", str(work / "ns_waived")).returncode == 0
    assert run_steer(*args, "--norm-stats", str(ASSETS / "default_policy" / "norm_stats.json"), "--out", str(work / "ns_given")).returncode == 0
