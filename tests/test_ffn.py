"""Command-line behaviour of vlasteer.ffn: real argv (the seed's dashed flags), exit status, one-line errors, no partial JSON.

The notebook nbs/04_ffn.ipynb tests the functions; these tests run the console entry point in a subprocess.
"""
import json, os, subprocess, sys
from pathlib import Path

import numpy as np
import pytest

from vlasteer.data import save_obs_batch
from vlasteer.checkpoints import save_policy
from vlasteer.policy import tiny_policy

from conftest import entry_command, entry_env, run_entry_point


def run_probe(*args: str):
    "Run `vlasteer_ffn_probe` (vlasteer.ffn:ffn_probe_main) with `args` as argv."
    return run_entry_point("vlasteer.ffn", "ffn_probe_main", *args)


def no_leftovers(folder: Path):
    assert not [p.name for p in folder.iterdir() if ".tmp-" in p.name or ".partial-" in p.name or p.name == "out.json"]


@pytest.fixture(scope="module")
def obs_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("obs")
    pol = tiny_policy("pi05")
    for i, prompt in enumerate(["open the top drawer of the cabinet", "close the top drawer of the cabinet", "turn on the stove"]):
        save_obs_batch(d / f"batch_{i:05d}.npz", pol.example_observation(batch_size=2, seed=i, prompt=prompt))
    return d


def test_probe_vlm(obs_dir, tmp_path):
    out = tmp_path / "proj.json"
    r = run_probe("--config-name", "tiny", "--observations-glob", str(obs_dir / "*.npz"), "--output-path", str(out),
                  "--top-k-per-layer", "4", "--max-batches", "2", "--store-value-vectors", "--min-activation", "0.0",
                  "--tower", "paligemma_language", "--top-n-tokens", "3", "--device", "cpu", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "wrote 8 neuron projections (vlm tower, 2 batches, 4 samples)" in r.stdout
    d = json.loads(out.read_text())
    assert d["tower"] == "vlm" and d["params"]["num_batches"] == 2 and d["token_projection"]
    rec = d["projections"][0]
    assert {"layer_index", "neuron_index", "max_activation", "top_tokens", "value_vector"} <= set(rec)
    assert len(rec["top_tokens"]) == 3 and set(rec["top_tokens"][0]) == {"token", "logit"}
    assert len(rec["value_vector"]) == 64 and rec["max_activation"] > 0


def test_probe_expert_and_span(obs_dir, tmp_path):
    out = tmp_path / "proj.json"
    r = run_probe("--config-name", "tiny", "--observations-glob", str(obs_dir / "*.npz"), "--output-path", str(out),
                  "--tower", "gemma_expert", "--token-span", "action", "--top-k-per-layer", "2", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "top_tokens are empty" in r.stdout
    d = json.loads(out.read_text())
    assert d["tower"] == "expert" and d["token_projection"] is None
    assert all(p["top_tokens"] == [] and p["value_vector"] is None for p in d["projections"])


def test_all_neurons_from_checkpoint(tmp_path):
    ckpt = save_policy(tiny_policy("pi05"), tmp_path / "ckpt")
    out = tmp_path / "all.json"
    r = run_probe("--checkpoint-dir", str(ckpt), "--all-neurons", "--layers", "1", "--top-n-tokens", "2", "--output-path", str(out), "--quiet")
    assert r.returncode == 0, r.stderr
    recs = json.loads(out.read_text())["projections"]
    assert len(recs) == 128 and recs[0]["flat_index"] == 128 and recs[-1]["flat_index"] == 255
    assert all(rec["max_activation"] is None and len(rec["top_tokens"]) == 2 for rec in recs)


@pytest.mark.parametrize("case", ["empty_glob", "not_obs", "wrong_obs", "layers", "config", "expert_all", "no_parent", "span"])
def test_bad_input(obs_dir, tmp_path, case):
    out = tmp_path / "out.json"
    glob_ = str(obs_dir / "*.npz")
    extra = []
    if case == "empty_glob": glob_ = str(tmp_path / "nothing_*.npz")
    if case == "not_obs":
        (tmp_path / "junk").mkdir(); np.savez(tmp_path / "junk" / "a.npz", x=np.zeros(3)); glob_ = str(tmp_path / "junk" / "*.npz")
    if case == "wrong_obs":
        (tmp_path / "wrong").mkdir()
        save_obs_batch(tmp_path / "wrong" / "a.npz", {"image": {"front": np.zeros((1, 8, 8, 3), np.uint8)},
                                                      "state": np.zeros((1, 8), np.float32), "prompt": ["x"]})
        glob_ = str(tmp_path / "wrong" / "*.npz")
    if case == "layers": extra = ["--layers", "7"]
    if case == "config": extra = ["--config-name", "pi05_libero"]
    if case == "expert_all": extra = ["--all-neurons", "--tower", "expert"]
    if case == "no_parent": out = tmp_path / "missing" / "out.json"
    if case == "span": extra = ["--token-span", "action"]
    args = ["--observations-glob", glob_, "--output-path", str(out), "--quiet"]
    if case != "config": args = ["--config-name", "tiny"] + args
    r = run_probe(*args, *extra)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    want = {"empty_glob": "no files match", "not_obs": "not an observation batch", "wrong_obs": "a.npz: the policy cannot take",
            "layers": "out of range", "config": "unknown --config-name", "expert_all": "only the vlm tower",
            "no_parent": "does not exist", "span": "do not exist in the vlm tower"}[case]
    assert want in lines[0], lines[0]
    assert not out.exists()
    no_leftovers(tmp_path)
