"""Command-line behaviour of vlasteer.sae: real argv (dashed flags), exit status, one-line errors, no partial output.

The notebook nbs/08_sae.ipynb tests the functions; these tests run the console entry points in a subprocess.
Each run that reaches SAELens pays its import (several seconds); the bad-input cases that need no SAE fail
before that import.
"""
import json, os, shutil, socket, subprocess, sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from vlasteer.slices import ConceptSlice, save_slice, slice_path
from vlasteer.directions import PairSpec, write_pairs_config

from conftest import console_module, entry_command, entry_env, run_entry_point
LAYER, WIDTH = 2, 16


def run_entry(entry: str, *args: str):
    "Run `vlasteer.sae.<entry>()` as a console script would, with `args` as argv."
    return run_entry_point(console_module(entry), entry, *args)


def sparse_rows(n: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    "Rows made of 3 of 24 fixed directions (shared by every concept) plus noise, shifted along the first axis."
    atoms = np.random.default_rng(0).normal(size=(24, WIDTH))
    rng = np.random.default_rng(seed)
    codes = np.zeros((n, 24))
    for i in range(n): codes[i, rng.choice(24, 3, replace=False)] = rng.uniform(0.5, 1.5, 3)
    x = codes @ atoms + 0.01 * rng.normal(size=(n, WIDTH))
    x[:, 0] += shift
    return torch.tensor(x, dtype=torch.float32)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    "Four concept slices at layer 2 (b is a shifted along axis 0, d is c shifted the other way) and a pairs config."
    root = tmp_path_factory.mktemp("sae_cli")
    (root / "slices" / f"layer{LAYER:02d}").mkdir(parents=True)
    for i, (name, shift) in enumerate((("a", 0.0), ("b", 4.0), ("c", 0.0), ("d", -4.0))):
        save_slice(ConceptSlice(name, sparse_rows(400, seed=i + 1, shift=shift), torch.arange(400 * i, 400 * (i + 1)), layer=LAYER,
                                hook=f"vlm.blocks.{LAYER}.hook_resid_post", token_type="instruction"), slice_path(root / "slices", LAYER, name))
    s = lambda c: f"slices/layer{LAYER:02d}/{c}.safetensors"  # relative to the config's folder
    write_pairs_config([PairSpec("ab", "a", s("a"), "b", s("b")), PairSpec("cd", "c", s("c"), "d", s("d")),
                        PairSpec("ba", "b", s("b"), "a", s("a"))], root / "pairs.json")
    return root


@pytest.fixture(scope="module")
def sae_dir(work) -> Path:
    "An SAE trained by the training CLI on the four slices."
    r = run_entry("train_sae_main", "--slices", str(work / "slices" / f"layer{LAYER:02d}"), "--output-dir", str(work / "sae"),
                  "--d-sae", "64", "--l1-coefficient", "0.05", "--lr", "0.01", "--steps", "300", "--batch-size", "64",
                  "--threads", "1", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stdout and "variance_explained" in r.stdout
    return work / "sae"


def test_train_writes_a_saelens_directory(sae_dir):
    assert sorted(p.name for p in sae_dir.iterdir()) == ["cfg.json", "sae_weights.safetensors", "vlasteer.json"]
    cfg = json.loads((sae_dir / "cfg.json").read_text())
    assert (cfg["d_in"], cfg["d_sae"], cfg["architecture"]) == (WIDTH, 64, "standard")
    assert cfg["metadata"]["hook_name"] == f"vlm.blocks.{LAYER}.hook_resid_post"
    extra = json.loads((sae_dir / "vlasteer.json").read_text())
    assert extra["fidelity_on"] == "held-out rows" and extra["concepts"] == {"a": 400, "b": 400, "c": 400, "d": 400}
    pooled = [r for r in extra["fidelity"] if r["concept"] == "all"][0]
    assert pooled["variance_explained"] > 0.8 and pooled["n"] == 4 * 80
    assert not any(p.name.startswith(".") for p in sae_dir.parent.iterdir())  # no temp folder left
    from vlasteer.sae import load_sae  # SAELens itself loads what the CLI wrote
    sae = load_sae(path=sae_dir, d_model=WIDTH)
    assert type(sae).__name__ == "StandardSAE"


def _tensors(f: Path) -> tuple[dict, dict]:
    with safe_open(str(f), framework="pt") as h: return {k: h.get_tensor(k) for k in h.keys()}, h.metadata()


def test_directions(work, sae_dir):
    out = work / "out"
    args = ["--pairs-config", str(work / "pairs.json"), "--output-root", str(out), "--layer", str(LAYER),
            "--sae-path", str(sae_dir), "--batch-size", "100", "--device", "cpu", "--quiet"]
    r = run_entry("sae_directions_main", *args)
    assert r.returncode == 0, r.stderr
    d = out / f"layer{LAYER:02d}"
    assert sorted(p.name for p in d.iterdir()) == ["ab", "ba", "cd", "pairwise_stats.json", "pairwise_stats.safetensors", "sae_fidelity.json"]
    assert sorted(p.name for p in (d / "ab").iterdir()) == ["latent_direction.safetensors", "negative_latent_mean.safetensors",
                                                           "positive_latent_mean.safetensors", "residual_direction.safetensors", "summary.json"]
    pos, pmeta = _tensors(d / "ab" / "positive_latent_mean.safetensors")
    neg, nmeta = _tensors(d / "ab" / "negative_latent_mean.safetensors")
    assert (pmeta["concept"], pmeta["count"], nmeta["concept"]) == ("a", "400", "b")
    lat, lmeta = _tensors(d / "ab" / "latent_direction.safetensors")
    assert torch.equal(lat["direction"], pos["mean"] - neg["mean"])
    assert abs(float(lmeta["norm"]) - float(lat["direction"].norm())) < 1e-4
    # the residual direction is Δz @ W_dec, without the decoder bias
    W = load_file(str(sae_dir / "sae_weights.safetensors"))
    res, _ = _tensors(d / "ab" / "residual_direction.safetensors")
    assert torch.allclose(res["direction"], lat["direction"] @ W["W_dec"], atol=1e-5)
    assert not torch.allclose(res["direction"], lat["direction"] @ W["W_dec"] + W["b_dec"], atol=1e-3)
    # the raw difference is a's mean residual minus b's; the shift is along axis 0
    a = load_file(str(slice_path(work / "slices", LAYER, "a")))["residuals"]
    b = load_file(str(slice_path(work / "slices", LAYER, "b")))["residuals"]
    assert torch.allclose(res["raw_difference"], a.mean(0) - b.mean(0), atol=1e-5)
    # swapped labels give the negated direction; the shifted pairs anti-align; halves agree
    lat_ba, _ = _tensors(d / "ba" / "latent_direction.safetensors")
    assert torch.equal(lat_ba["direction"], -lat["direction"])
    stats = json.loads((d / "pairwise_stats.json").read_text())
    assert stats["names"] == ["ab", "cd", "ba"]
    assert abs(stats["latent_cosine"][0][2] + 1) < 1e-5 and stats["raw_cosine"][0][1] < -0.9
    assert all(s[2] > 0.9 for s in stats["split_half"])
    summary = json.loads((d / "ab" / "summary.json").read_text())
    assert summary["split_half_cosine"]["residual"] > 0.9 and summary["positive"] == {"concept": "a", "count": 400}
    fid = json.loads((d / "sae_fidelity.json").read_text())
    assert [r["concept"] for r in fid["rows"]] == ["a", "b", "c", "d", "all"] and fid["sae"]["d_sae"] == 64
    # a second run replaces the outputs with identical ones
    def contents():  # tensors and metadata (safetensors does not fix the order of metadata keys in the header)
        out = {}
        for p in sorted(d.rglob("*.safetensors")):
            t, m = _tensors(p)
            out[str(p.relative_to(d))] = ({k: v.numpy().tobytes() for k, v in t.items()}, m)
        return out
    before = contents()
    r = run_entry("sae_directions_main", *args)  # existing outputs: refused without --overwrite, untouched
    assert r.returncode == 1 and r.stderr.strip().endswith(f"{d} exists; pass --overwrite to replace it, or choose another output path"), r.stderr
    assert contents() == before
    (d / "old_pair").mkdir()                      # the layer folder is replaced whole
    r = run_entry("sae_directions_main", *args, "--overwrite")
    assert r.returncode == 0, r.stderr
    assert not (d / "old_pair").exists()
    assert contents() == before and len(before) == 3 * 4 + 1
    assert not any(p.name.startswith(".") for p in d.iterdir())


def _bad_case(work: Path, sae_dir: Path, tmp: Path, case: str) -> tuple[list[str], str]:
    "Arguments of a directions run with one bad input, and the phrase its error must contain."
    sl = lambda c: str(slice_path(work / "slices", LAYER, c))
    pairs, sae = [PairSpec("ab", "a", sl("a"), "b", sl("b"))], ["--sae-path", str(sae_dir)]
    if case == "wrong_width":
        for c in ("w1", "w2"): save_slice(ConceptSlice(c, torch.randn(10, WIDTH + 3), layer=LAYER), tmp / f"{c}.safetensors")
        pairs, want = [PairSpec("ww", "w1", str(tmp / "w1.safetensors"), "w2", str(tmp / "w2.safetensors"))], "width 19"
    elif case == "empty_slice":
        save_file({"residuals": torch.zeros(0, WIDTH), "index": torch.zeros(0, dtype=torch.int64)}, str(tmp / "e.safetensors"), metadata={"concept": "e"})
        pairs, want = [PairSpec("ae", "a", sl("a"), "e", str(tmp / "e.safetensors"))], "is empty"
    elif case == "nan":
        x = sparse_rows(20, seed=9); x[3, 5] = float("nan")
        save_file({"residuals": x, "index": torch.arange(20)}, str(tmp / "n.safetensors"), metadata={"concept": "n"})
        pairs, want = [PairSpec("an", "a", sl("a"), "n", str(tmp / "n.safetensors"))], "NaN or inf"
    elif case == "missing_file":
        pairs, want = [PairSpec("ax", "a", sl("a"), "x", str(tmp / "gone.safetensors"))], "does not exist"
    elif case == "no_cfg":
        (tmp / "sae_nocfg").mkdir(); (tmp / "sae_nocfg" / "sae_weights.safetensors").write_bytes((sae_dir / "sae_weights.safetensors").read_bytes())
        sae, want = ["--sae-path", str(tmp / "sae_nocfg")], "has no cfg.json"
    elif case == "unknown_keys":
        w = load_file(str(sae_dir / "sae_weights.safetensors"))
        torch.save({"W_enc": w["W_enc"], "b_enc": w["b_enc"], "W_gate": torch.zeros(3)}, tmp / "ft.pt")
        sae, want = ["--sae-path", str(sae_dir), "--finetuned-sae-path", str(tmp / "ft.pt")], "unknown keys ['W_gate']"
    elif case == "offline_release":
        sae, want = ["--sae-release", "gemma-2b-it-res-jb", "--sae-id", "blocks.12.hook_resid_post"], "cannot load SAE 'gemma-2b-it-res-jb'"
    elif case == "damaged_slice":
        f = tmp / "cut.safetensors"; f.write_bytes(Path(sl("a")).read_bytes()[:50])
        pairs, want = [PairSpec("ac", "a", sl("a"), "cut", str(f))], f"cannot read concept slice {f} ("
    elif case == "pickled_slice":
        torch.save({"residuals": torch.zeros(3, WIDTH), "source": Path("x")}, tmp / "p.pt")
        pairs, want = [PairSpec("ap", "a", sl("a"), "p", str(tmp / "p.pt"))], "it is a pickle of Python objects (it names pathlib"
    elif case == "bad_config":
        (tmp / "pairs.json").write_text(json.dumps({"pairs": [{"name": "ab", "positive_label": "a"}]}))
        return ["--pairs-config", str(tmp / "pairs.json"), "--output-root", str(tmp / "out"), *sae], "missing"
    write_pairs_config(pairs, tmp / "pairs.json")
    return ["--pairs-config", str(tmp / "pairs.json"), "--output-root", str(tmp / "out"), "--layer", str(LAYER), *sae], want


@pytest.mark.parametrize("case", ["wrong_width", "empty_slice", "nan", "missing_file", "no_cfg", "unknown_keys", "offline_release", "bad_config",
                                  "damaged_slice", "pickled_slice"])
def test_directions_bad_input(work, sae_dir, tmp_path, case):
    args, want = _bad_case(work, sae_dir, tmp_path, case)
    r = run_entry("sae_directions_main", *args, "--quiet")
    assert r.returncode != 0
    errors = [l for l in r.stderr.strip().splitlines() if l.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: "), r.stderr
    assert want in errors[0], errors[0]
    assert "Re-running" not in errors[0] and "weights_only` set to `False`" not in errors[0]
    assert not (tmp_path / "out").exists()  # nothing written, not even the output root


@pytest.mark.parametrize("case", ["exists", "nan", "bad_arch", "no_slices"])
def test_train_bad_input(work, tmp_path, case):
    src, out = str(work / "slices" / f"layer{LAYER:02d}"), tmp_path / "sae"
    extra = []
    if case == "exists": out.mkdir(); (out / "keep.txt").write_text("x")
    if case == "nan":
        x = sparse_rows(20, seed=9); x[0, 0] = float("inf")
        save_file({"residuals": x, "index": torch.arange(20)}, str(tmp_path / "n.safetensors")); src = str(tmp_path / "n.safetensors")
    if case == "bad_arch": extra = ["--architecture", "gated"]
    if case == "no_slices": (tmp_path / "empty").mkdir(); src = str(tmp_path / "empty")
    r = run_entry("train_sae_main", "--slices", src, "--output-dir", str(out), "--steps", "5", "--quiet", *extra)
    assert r.returncode != 0
    errors = [l for l in r.stderr.strip().splitlines() if l.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: "), r.stderr
    want = {"exists": "sae exists; pass --overwrite to replace it", "nan": "NaN or inf", "bad_arch": "architecture must be one of", "no_slices": "holds no concept slices"}[case]
    assert want in errors[0], errors[0]
    if case == "exists": assert [p.name for p in out.iterdir()] == ["keep.txt"]
    else: assert not out.exists()
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_train_overwrite_and_leftovers(work, tmp_path):
    "An existing SAE directory is replaced only with --overwrite, whole; what a killed run left beside it is removed."
    out = tmp_path / "sae"
    args = ["--slices", str(work / "slices" / f"layer{LAYER:02d}"), "--output-dir", str(out), "--steps", "20", "--d-sae", "32", "--quiet"]
    assert run_entry("train_sae_main", *args).returncode == 0
    (out / "notes.txt").write_text("by hand")
    dead = subprocess.Popen([sys.executable, "-c", "pass"]); dead.wait()
    for name in (f".sae.partial-0badc0de-{dead.pid}@{socket.gethostname()}", ".sae.tmpa1b2c3d4"):  # this version's and earlier ones'
        (tmp_path / name).mkdir(); (tmp_path / name / "cfg.json").write_text("{}")
    r = run_entry("train_sae_main", *args, "--overwrite")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["cfg.json", "sae_weights.safetensors", "vlasteer.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sae"]
    assert json.loads((out / "vlasteer.json").read_text())["concepts"] == {"a": 400, "b": 400, "c": 400, "d": 400}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    "A residual run of the tiny policy over a small LeRobot dataset (two layers, instructions and decision)."
    from vlasteer.data import convert_libero_to_lerobot, synthetic_libero_demo, write_libero_hdf5
    from vlasteer.policy import tiny_policy
    from vlasteer.residuals import CaptureConfig, capture_residuals
    d = tmp_path_factory.mktemp("sae_run")
    (d / "libero").mkdir()
    write_libero_hdf5(d / "libero" / "a_demo.hdf5", [synthetic_libero_demo(num_frames=40 + 5 * j, image_size=16, seed=j) for j in range(4)],
                      "slide left", env_name="SlideEnv")
    root = convert_libero_to_lerobot(d / "libero", "test/slide", d / "lerobot")
    capture_residuals(tiny_policy(seed=0), root, d / "run", CaptureConfig([0, 1], batch_size=16, samples_per_file=32),
                      repo_id="test/slide")
    return d / "run"


def test_train_from_a_run_streamed(run_dir, tmp_path):
    "--run-dir: the chunk files of one group and layer, streamed through a small buffer; fidelity on held-out rows."
    out = tmp_path / "sae"
    r = run_entry("train_sae_main", "--run-dir", str(run_dir), "--layer", "1", "--token-type", "decision", "--output-dir", str(out),
                  "--d-sae", "128", "--steps", "60", "--batch-size", "32", "--buffer-rows", "96", "--holdout-fraction", "0.25",
                  "--threads", "1", "--quiet")
    assert r.returncode == 0, r.stderr
    extra = json.loads((out / "vlasteer.json").read_text())
    meta = json.loads((run_dir / "metadata.json").read_text())
    n = meta["frames"]["count"]
    assert extra["hook"] == "vlm.blocks.1.hook_resid_post" and extra["layer"] == 1 and extra["concepts"] == {"decision/vlm": n}
    assert (out / extra["source"]["run"]).resolve() == run_dir.resolve()
    assert [row["concept"] for row in extra["fidelity"]] == ["all"] and extra["fidelity"][0]["n"] < n // 3
    assert extra["info"]["steps"] == 60 and extra["info"]["train_rows"] + extra["fidelity"][0]["n"] == n
    cfg = json.loads((out / "cfg.json").read_text())
    assert (cfg["d_in"], cfg["d_sae"]) == (meta["token_groups"][0]["d_model"], 128)
    # the streamed rows are the run's: a chunk holding NaN stops training, naming the file
    bad = tmp_path / "run"; shutil.copytree(run_dir, bad)
    f = bad / "decision" / "layer01_chunk0002.safetensors"
    t = load_file(str(f)); t["residuals"][5, 0] = float("nan")
    with safe_open(str(run_dir / "decision" / "layer01_chunk0002.safetensors"), framework="pt") as h: m = h.metadata()
    save_file(t, str(f), metadata=m)
    r = run_entry("train_sae_main", "--run-dir", str(bad), "--layer", "1", "--token-type", "decision", "--output-dir", str(tmp_path / "sae2"),
                  "--steps", "200", "--batch-size", "32", "--buffer-rows", "96", "--quiet")
    errors = [l for l in r.stderr.strip().splitlines() if l.strip()]
    assert r.returncode == 1 and len(errors) == 1 and f"residual file {f} holds NaN or inf" in errors[0], r.stderr
    assert not (tmp_path / "sae2").exists()
