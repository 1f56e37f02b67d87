"""Command-line behaviour of vlasteer.residuals: capture, kill and resume, shards and merge, slicing, bad input.

The notebook nbs/07_residuals.ipynb tests the functions; these tests run the console entry points in subprocesses,
including one that is killed (SIGKILL) in the middle of a capture and then run again.
"""
import json, os, shutil, signal, socket, subprocess, sys, time
from pathlib import Path

import numpy as np
import pytest
import torch

from vlasteer.data import convert_libero_to_lerobot, load_lerobot_dataset, synthetic_libero_demo, write_libero_hdf5
from vlasteer.contrast import ContrastConfig, build_concept_map, contrast_from_lerobot, save_concept_map
from vlasteer.policy import GemmaSize, tiny_policy
from vlasteer.checkpoints import save_policy
from vlasteer.residuals import read_chunk, write_tensors
from vlasteer.slices import read_slice

from conftest import console_module, entry_command, entry_env, run_entry_point
ENV = entry_env()


def _cmd(entry: str, *args: str) -> list:
    return entry_command(console_module(entry), entry, *args)


def run_entry(entry: str, *args: str, env: dict | None = None):
    "Run `vlasteer.residuals.<entry>()` as a console script would, with `args` as argv."
    return run_entry_point(console_module(entry), entry, *args, env=env)


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
    m = contrast_from_lerobot(root, "slide left", "slide right", repo_id="test/slide", cfg=ContrastConfig(pad=1))
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
    assert meta["config_name"] == "tiny_test" and (reference / meta["checkpoint"]).resolve() == data["ckpt"].resolve()
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


# ---- reliability: each class of failure a user met, as the console scripts see it ----------------------------------

MODULES = ("residuals.py", "slices.py", "sae.py", "directions.py")


@pytest.mark.parametrize("module", MODULES)
def test_modules_bind_every_name(module):
    "A name imported only by a hidden notebook cell passes the notebook tests and breaks the console script."
    from test_package import unbound_names  # the one implementation of the stop hook's check
    assert unbound_names((Path(__file__).resolve().parents[1] / "vlasteer" / module).read_text()) == []


@pytest.mark.parametrize("config_name", ["tiny", "default"])
def test_capture_without_checkpoint(data, tmp_path, config_name):
    "The main job's recorded command: the built-in policies, no --checkpoint-path."
    out = tmp_path / "run"
    r = run_entry("save_residuals_main", "--config-name", config_name, "--output-dir", str(out), "--lerobot-root", str(data["root"]),
                  "--repo-id", "test/slide", "--layers", "1", "--token-groups", "instructions", "--batch-size", "8", "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    meta = json.loads((out / "metadata.json").read_text())
    assert (meta["checkpoint"], meta["config_name"]) == (config_name, config_name) and meta["frames"]["count"] == data["n"]


def one_error_line(r, want: str):
    assert r.returncode == 1, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and want in lines[0], r.stderr
    return lines[0]


def test_resume_refuses_changed_dataset(data, tmp_path):
    "The dataset's content changed under the same path between two shards of a capture: the old chunks are stale."
    root = tmp_path / "lerobot"; shutil.copytree(data["root"], root)
    args = [str(root) if a == str(data["root"]) else a for a in capture_args(data, tmp_path / "run")]
    r = run_entry("save_residuals_main", *args, "--shard-index", "0", "--num-shards", "2")
    assert r.returncode == 0, r.stderr
    st = root / "meta" / "stats.json"; sd = json.loads(st.read_text()); sd["index"]["max"] = [-1]; st.write_text(json.dumps(sd))  # other statistics
    r = run_entry("save_residuals_main", *args, "--shard-index", "1", "--num-shards", "2")
    one_error_line(r, "was captured from other input files: the content of the dataset (digest")
    assert not (tmp_path / "run" / "metadata.json").exists()


def test_damaged_chunk_of_a_resumed_run(data, tmp_path):
    out = tmp_path / "run"
    r = run_entry("save_residuals_main", *capture_args(data, out, "--shard-index", "0", "--num-shards", "2"))
    assert r.returncode == 0, r.stderr
    f = out / "decision" / "layer01_chunk0001.safetensors"
    f.write_bytes(f.read_bytes()[:64])
    r = run_entry("save_residuals_main", *capture_args(data, out, "--shard-index", "0", "--num-shards", "2"))
    line = one_error_line(r, f"cannot read residual chunk {f} (")
    assert "run the capture again to recompute it" in line


@pytest.mark.parametrize("case", ["extra_chunk", "nan_chunk", "pickled_chunk"])
def test_slice_refuses_what_a_run_does_not_declare(data, reference, tmp_path, case):
    run = tmp_path / "run"; shutil.copytree(reference, run)
    if case == "extra_chunk":   # a chunk file metadata.json does not list is not part of the run
        shutil.copy(run / "instructions" / "layer01_chunk0000.safetensors", run / "instructions" / "layer01_chunk9999.safetensors")
        want = "holds files its metadata.json does not list (instructions/layer01_chunk9999.safetensors)"
    if case == "nan_chunk":     # non-finite residuals are refused by the first step that reads them
        f = run / "instructions" / "layer01_chunk0003.safetensors"
        c = read_chunk(f); c["residuals"][1, 2] = float("nan")
        write_tensors(f, {k: v for k, v in c.items() if torch.is_tensor(v)}, c["metadata"])
        want = f"residual chunk {f} holds NaN or inf in 1 of 2 rows"
    if case == "pickled_chunk":  # a seed run's .pt chunk holding a pickled object: refused, and the message does not invite unpickling
        run = tmp_path / "seed_run"; (run / "instructions").mkdir(parents=True)
        torch.save({"residuals": torch.zeros(2, 4), "note": Path("x")}, run / "instructions" / "layer01_chunk0000.pt")
        want = "it is a pickle of Python objects (it names pathlib"
    r = run_entry("slice_residuals_main", "--run-dir", str(run), "--concept-map-path", str(data["cmap"]), "--output-dir",
                  str(tmp_path / "slices"), "--token-type", "instructions")
    line = one_error_line(r, want)
    assert "weights_only` set to `False`" not in line and "Re-running" not in line
    assert not (tmp_path / "slices").exists()


def test_overwrite_rule_and_leftovers(data, reference, tmp_path):
    "Slices (a folder): refused when present unless --overwrite, replaced whole; temp folders of killed runs are removed."
    out = tmp_path / "slices"
    args = ["--run-dir", str(reference), "--concept-map-path", str(data["cmap"]), "--output-dir", str(out), "--quiet"]
    assert run_entry("slice_residuals_main", *args).returncode == 0
    (out / "layer01" / "stale.safetensors").write_bytes(b"from an earlier run")
    one_error_line(run_entry("slice_residuals_main", *args), f"{out} exists; pass --overwrite to replace it")
    assert (out / "layer01" / "stale.safetensors").exists()
    # what killed runs left: the partial folder of this version (a dead process) and of earlier ones
    dead = subprocess.Popen([sys.executable, "-c", "pass"]); dead.wait()
    for name in (f".slices.partial-0badc0de-{dead.pid}@{socket.gethostname()}", ".slices.partial-k3j_x9a2"):
        (tmp_path / name / "layer01").mkdir(parents=True)
    r = run_entry("slice_residuals_main", *args, "--overwrite")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (out / "layer01").iterdir()) == ["slide left.safetensors", "slide right.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slices"]
    slices = json.loads((out / "slices.json").read_text())
    assert (out / slices["run"]).resolve() == reference.resolve()


def test_merge_overwrite(data, tmp_path):
    for i in range(2):
        assert run_entry("save_residuals_main", *capture_args(data, tmp_path / f"s{i}", "--shard-index", str(i), "--num-shards", "2")).returncode == 0
    args = ["--run-dir", str(tmp_path / "merged"), "--shard-dirs", str(tmp_path / "s0"), str(tmp_path / "s1")]
    assert run_entry("merge_residuals_main", *args).returncode == 0
    one_error_line(run_entry("merge_residuals_main", *args), "exists; pass --overwrite to replace it")
    assert run_entry("merge_residuals_main", *args, "--overwrite").returncode == 0


def test_recorded_paths_survive_a_move(data, tmp_path):
    "A job writes into a temporary folder and renames it at the end: the run's recorded paths must still point at its inputs."
    work = tmp_path / ".job.tmp"; work.mkdir()
    shutil.copytree(data["root"], work / "lerobot")
    args = [str(work / "lerobot") if a == str(data["root"]) else a for a in capture_args(data, work / "residuals" / "run")]
    (work / "residuals").mkdir()
    assert run_entry("save_residuals_main", *args).returncode == 0
    work.rename(tmp_path / "job")
    run = tmp_path / "job" / "residuals" / "run"
    meta = json.loads((run / "metadata.json").read_text())
    assert (run / meta["dataset"]["root"] / "meta" / "info.json").is_file()
    assert ".job.tmp" not in json.dumps(meta) + (run / "capture.json").read_text()
