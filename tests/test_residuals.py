"""Command-line behaviour of vlasteer.residuals: capture, kill and resume, shards and merge, slicing, bad input.

The notebook nbs/07_residuals.ipynb tests the functions; these tests run the console entry points in subprocesses,
including one that is killed (SIGKILL) in the middle of a capture and then run again.
"""
import json, os, signal, subprocess, sys, time
from pathlib import Path

import numpy as np
import pytest
import torch

from vlasteer.data import convert_libero_to_lerobot, load_lerobot_dataset, synthetic_libero_demo, write_libero_hdf5
from vlasteer.contrast import build_concept_map, contrast_from_lerobot, save_concept_map
from vlasteer.policy import GemmaSize, save_policy, tiny_policy
from vlasteer.residuals import read_chunk, read_slice

from conftest import entry_command, entry_env, run_entry_point
ENV = entry_env()


def _cmd(entry: str, *args: str) -> list:
    return entry_command("vlasteer.residuals", entry, *args)


def run_entry(entry: str, *args: str, env: dict | None = None):
    "Run `vlasteer.residuals.<entry>()` as a console script would, with `args` as argv."
    return run_entry_point("vlasteer.residuals", entry, *args, env=env)


def _demo(sign: int, T: int, seed: int):
    d = synthetic_libero_demo(num_frames=T, image_size=16, seed=seed)
    ee = d.obs["ee_states"].copy()
    ee[:, 1] += sign * 0.2 * np.clip((np.arange(T) - 4) / 4, 0, 1)
    d.obs["ee_states"], d.obs["ee_pos"] = ee, ee[:, :3]
    return d


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("residuals")
    (d / "libero").mkdir()
    write_libero_hdf5(d / "libero" / "slide_left_demo.hdf5", [_demo(+1, 16 + j, j) for j in range(3)], "slide left", env_name="SlideEnv")
    write_libero_hdf5(d / "libero" / "slide_right_demo.hdf5", [_demo(-1, 16 + j, 9 + j) for j in range(3)], "slide right", env_name="SlideEnv")
    root = convert_libero_to_lerobot(d / "libero", "test/slide", d / "lerobot")
    ds = load_lerobot_dataset(root, "test/slide")
    m = contrast_from_lerobot(root, "slide left", "slide right", repo_id="test/slide", pad=1)
    cmap = save_concept_map(build_concept_map(m, ds, lerobot_root=str(root), repo_id="test/slide"), d / "cm.json")
    ck = save_policy(tiny_policy(seed=0), d / "ckpt")
    other = save_policy(tiny_policy(seed=0, vlm=GemmaSize(width=32, depth=2, mlp_dim=64, num_heads=2, num_kv_heads=1, head_dim=16)), d / "ckpt_narrow")
    return dict(dir=d, root=root, n=len(ds), cmap=cmap, ckpt=ck, other=other)


def capture_args(data, out, *extra) -> list:
    return ["--checkpoint-path", str(data["ckpt"]), "--config-name", "tiny_test", "--output-dir", str(out),
            "--lerobot-root", str(data["root"]), "--repo-id", "test/slide", "--layers", "1", "--capture-instructions",
            "--batch-size", "1", "--samples-per-file", "2", "--quiet", *extra]


def tensors_of(run: Path) -> dict:
    return {str(p.relative_to(run)): {k: v for k, v in read_chunk(p).items() if k != "metadata"}
            for p in sorted(run.glob("*/*.safetensors"))}


def assert_same_run(a: Path, b: Path):
    ta, tb = tensors_of(a), tensors_of(b)
    assert sorted(ta) == sorted(tb)
    for k in ta:
        for j, v in ta[k].items():
            assert (v is None and tb[k][j] is None) or torch.equal(v, tb[k][j]), (k, j)
    ma, mb = (json.loads((r / "metadata.json").read_text()) for r in (a, b))
    for m in (ma, mb): m["dataset"].pop("root"); m.pop("checkpoint")
    assert ma == mb


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory) -> Path:
    "An uninterrupted capture."
    out = tmp_path_factory.mktemp("ref") / "run"
    r = run_entry("save_residuals_main", *capture_args(data, out))
    assert r.returncode == 0, r.stderr
    assert "run complete" in r.stdout
    return out


def test_reference_run(data, reference):
    meta = json.loads((reference / "metadata.json").read_text())
    n = data["n"]
    assert meta["complete"] and meta["frames"]["count"] == n and meta["num_chunks"] == -(-n // 2)
    assert meta["counts"] == {"instructions": {"layer01": n}, "decision": {"layer01": n}}
    assert meta["config_name"] == "tiny_test" and meta["checkpoint"] == str(data["ckpt"])
    assert len(meta["files"]) == 2 * meta["num_chunks"] and meta["dataset"]["total_frames"] == n
    c = read_chunk(reference / "instructions" / "layer01_chunk0001.safetensors")
    assert c["residuals"].shape == (2, 64) and c["index"].tolist() == [2, 3]


def test_kill_and_resume(data, reference, tmp_path):
    out = tmp_path / "run"
    args = capture_args(data, out)
    p = subprocess.Popen(_cmd("save_residuals_main", *args), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t0 = time.time()
    try:
        while time.time() - t0 < 300 and p.poll() is None:
            if len(list((out / "decision").glob("layer01_chunk*.safetensors"))) >= 3: break
            time.sleep(0.005)
        assert p.poll() is None, f"the capture ended before it could be killed: {p.stderr.read().decode()[-500:]}"
        p.send_signal(signal.SIGKILL)
        p.wait(30)
    finally:
        if p.poll() is None: p.kill()
    assert not (out / "metadata.json").exists()
    done = len(list((out / "decision").glob("layer01_chunk*.safetensors")))
    assert 3 <= done < -(-data["n"] // 2), done                  # killed mid-run
    r = run_entry("save_residuals_main", *args)
    assert r.returncode == 0, r.stderr
    assert_same_run(reference, out)
    assert not list(out.rglob(".*"))                            # no temp file survives the resume


def test_shards_one_dir_and_merge(data, reference, tmp_path):
    shared = tmp_path / "shared"
    r0 = run_entry("save_residuals_main", *capture_args(data, shared, "--shard-index", "0", "--num-shards", "2"))
    assert r0.returncode == 0 and "shard 0/2 done" in r0.stdout, r0.stderr
    assert not (shared / "metadata.json").exists()
    # torchrun's environment picks the shard when the flags do not
    r1 = run_entry("save_residuals_main", *capture_args(data, shared), env={"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "0"})
    assert r1.returncode == 0 and "run complete" in r1.stdout, r1.stderr
    assert_same_run(reference, shared)
    # shards written to separate folders, joined by the merge step
    for i in range(2):
        r = run_entry("save_residuals_main", *capture_args(data, tmp_path / f"s{i}", "--shard-index", str(i), "--num-shards", "2"))
        assert r.returncode == 0, r.stderr
    r = run_entry("merge_residuals_main", "--run-dir", str(tmp_path / "merged"), "--shard-dirs", str(tmp_path / "s0"), str(tmp_path / "s1"))
    assert r.returncode == 0 and "run complete" in r.stdout, r.stderr
    assert_same_run(reference, tmp_path / "merged")


def test_slice(data, reference, tmp_path):
    out = tmp_path / "slices"
    r = run_entry("slice_residuals_main", "--run-dir", str(reference), "--concept-map-path", str(data["cmap"]), "--output-dir", str(out),
                  "--token-type", "instructions", "--layers", "1", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (out / "layer01").iterdir()) == ["slide left.safetensors", "slide right.safetensors"]
    cmap = json.loads(data["cmap"].read_text())
    x, i, meta = read_slice(out / "layer01" / "slide right.safetensors")
    want = np.unique(np.concatenate([np.arange(q["start_index"], q["end_index"] + 1) for q in cmap["concepts"]["slide right"]]))
    assert i.tolist() == want.tolist() and x.shape == (len(want), 64) and x.dtype == torch.float32
    assert {k: meta[k] for k in ("concept", "layer", "hook", "token_type")} == \
        {"concept": "slide right", "layer": "1", "hook": "vlm.blocks.1.hook_resid_post", "token_type": "instructions"}
    full = torch.cat([read_chunk(f)["residuals"] for f in sorted((reference / "instructions").glob("layer01_chunk*"))])
    assert torch.equal(x, full[i])


@pytest.mark.parametrize("case", ["outside_dataset", "other_model", "empty_slice", "unfinished", "no_layers"])
def test_bad_input(data, reference, tmp_path, case):
    out = tmp_path / "out"
    if case == "outside_dataset":
        cm = json.loads(data["cmap"].read_text())
        cm["concepts"]["slide left"][0].update(start_index=data["n"] + 3, end_index=data["n"] + 5)
        (tmp_path / "far.json").write_text(json.dumps(cm))
        r = run_entry("slice_residuals_main", "--run-dir", str(reference), "--concept-map-path", str(tmp_path / "far.json"), "--output-dir", str(out))
        want = "points at frame indices up to"
    if case == "other_model":  # resuming into a run directory another model wrote
        out = tmp_path / "run"
        import shutil; shutil.copytree(reference, out)
        r = run_entry("save_residuals_main", *[str(data["other"]) if a == str(data["ckpt"]) else a for a in capture_args(data, out)])
        want = "captured from another model (widths"
    if case == "empty_slice":  # only the first frames were captured: a concept of later frames has no rows
        run = tmp_path / "short"
        r = run_entry("save_residuals_main", *capture_args(data, run, "--max-samples-per-layer", "4"))
        assert r.returncode == 0, r.stderr
        r = run_entry("slice_residuals_main", "--run-dir", str(run), "--concept-map-path", str(data["cmap"]), "--output-dir", str(out))
        want = "has no captured rows"
    if case == "unfinished":
        run = tmp_path / "half"
        r = run_entry("save_residuals_main", *capture_args(data, run, "--shard-index", "0", "--num-shards", "3"))
        assert r.returncode == 0, r.stderr
        r = run_entry("slice_residuals_main", "--run-dir", str(run), "--concept-map-path", str(data["cmap"]), "--output-dir", str(out))
        want = "is unfinished"
    if case == "no_layers":
        r = run_entry("save_residuals_main", "--output-dir", str(out), "--lerobot-root", str(data["root"]))
        want = "missing --layers"
    assert r.returncode != 0, r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and want in lines[0], r.stderr
    if case == "other_model": assert_same_run(reference, out)   # the run it refused is untouched
    else: assert not out.exists()
    assert not [p for p in tmp_path.rglob(".*")]
