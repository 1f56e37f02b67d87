"""Every reader of a file format, fed a truncated, an empty and a random-bytes version of its input.

The inputs are what the producers write: one quick main-job run (`vlasteer_demo --quick`) holds every format the
pipeline passes between steps; the seed's `.pt` residual chunk and slice are written with `torch.save` as the seed
did, a steering spec with `vlasteer.steering.save_spec`, and the checkpoint is the shipped default policy. Each case
copies the reader's input (a file, or the folder holding it), damages one file, and asks for what a command line
prints: a `ValueError` or `OSError` whose message is one line and names the damaged file (which `cli_errors` then
prints as `error: ...`), never a traceback of another type.
"""
import os, shutil
from pathlib import Path

import numpy as np
import pytest



REPO_ID = "vlasteer/toy_kitchen"


@pytest.fixture(scope="module")
def run(quick_main_run) -> Path:
    "The shared quick main-job run (conftest.py): its folder holds one file of every format; the seed's formats are added beside it."
    out = quick_main_run
    extra = out.parent / "extra"
    extra.mkdir()
    import torch
    from safetensors.torch import load_file
    chunk = load_file(str(next((out / "residuals" / "run").rglob("*.safetensors"))))
    torch.save({"residuals": chunk["residuals"], "index": chunk["index"]}, extra / "layer02_chunk0000.pt")  # the seed's chunk
    sl = load_file(str(out / "residuals" / "slices" / "layer02" / "open_drawer.safetensors"))
    torch.save({"residuals": sl["residuals"], "index": sl["index"]}, extra / "open_drawer.pt")            # the seed's slice
    from vlasteer.steering import Edit, SteeringSpec, save_spec
    direction = out / "directions" / "layer02" / "drawer" / "residual_direction.safetensors"
    save_spec(SteeringSpec("drawer", [Edit("add", layers=[2], tokens="instruction", direction=str(direction), alpha=2.0)]),
              extra / "spec.json")
    return out


def _policy_dir() -> Path:
    "The shipped default policy checkpoint (openpi's layout: model.safetensors + config.json + tokenizer)."
    from vlasteer.policy import ASSETS
    return ASSETS / "default_policy"


def _readers():
    "name -> (where the input is, the file in it to damage, reader(path to the input))."
    from vlasteer import data, contrast, clusters, ffn
    def residuals(): from vlasteer import residuals; return residuals
    def sae(): from vlasteer import sae; return sae
    def slices(): from vlasteer import slices; return slices
    def sweep(): from vlasteer import sweep; return sweep
    def steering(): from vlasteer import steering; return steering
    def checkpoints(): from vlasteer import checkpoints; return checkpoints
    chunk = lambda run: next((run / "residuals" / "run" / "instructions").glob("*.safetensors")).relative_to(run)
    cell = lambda run: next((run / "steering" / "cells").glob("*.json")).relative_to(run / "steering")
    return {
        "libero_info": ("data/demos/turn_on_the_stove_demo.hdf5", "", data.read_libero_info),
        "libero_hdf5": ("data/demos/turn_on_the_stove_demo.hdf5", "", data.read_libero_hdf5),
        "obs_batch": ("ffn/observations/batch_00000.npz", "", data.load_obs_batch),
        "lerobot_data_parquet": ("data/lerobot", "data/chunk-000/file-000.parquet", lambda p: data.load_lerobot_dataset(p, REPO_ID)),
        "lerobot_info_json": ("data/lerobot", "meta/info.json", lambda p: data.load_lerobot_dataset(p, REPO_ID)),
        "lerobot_episodes_parquet": ("data/lerobot", "meta/episodes/chunk-000/file-000.parquet", lambda p: data.load_lerobot_dataset(p, REPO_ID)),
        "lerobot_tasks_parquet": ("data/lerobot", "meta/tasks.parquet", lambda p: data.load_lerobot_dataset(p, REPO_ID)),
        "manifest": ("contrast/drawer_manifest.json", "", contrast.load_manifest),
        "concept_map": ("contrast/drawer_concept_map.json", "", contrast.load_concept_map),
        "clusters": ("clusters/clusters.json", "", clusters.load_clusters),
        "projections": ("ffn/projections.json", "", ffn.load_projections),
        "residual_chunk_safetensors": (chunk, "", lambda p: residuals().read_chunk(p)),
        "residual_chunk_pt": ("../extra/layer02_chunk0000.pt", "", lambda p: residuals().read_chunk(p)),
        "concept_slice_safetensors": ("residuals/slices/layer02/open_drawer.safetensors", "", lambda p: slices().load_slice(p)),
        "concept_slice_pt": ("../extra/open_drawer.pt", "", lambda p: slices().load_slice(p)),
        "sae_cfg": ("sae/layer02", "cfg.json", lambda p: sae().sae_from_disk(p)),
        "sae_weights": ("sae/layer02", "sae_weights.safetensors", lambda p: sae().sae_from_disk(p)),
        "direction": ("directions/layer02/drawer/residual_direction.safetensors", "", lambda p: steering().read_direction(str(p))),
        "checkpoint_weights": (None, "model.safetensors", lambda p: checkpoints().load_policy(p)),
        "checkpoint_config": (None, "config.json", lambda p: checkpoints().load_policy(p)),
        "steering_spec": ("../extra/spec.json", "", lambda p: steering().load_spec(p)),
        "sweep_cell": ("steering", cell, lambda p: sweep().load_sweep(p)),
    }


READERS = list(_readers())
DAMAGE = ("truncated", "empty", "random")


def damaged(data: bytes, how: str) -> bytes:
    if how == "truncated": return data[: len(data) // 2]
    if how == "empty": return b""
    return np.random.default_rng(len(data)).bytes(max(64, len(data) // 2))  # seeded: the same bytes every run


@pytest.mark.parametrize("how", DAMAGE)
@pytest.mark.parametrize("reader", READERS)
def test_damaged_input_is_one_line_naming_the_file(run, tmp_path, reader, how):
    where, inner, fn = _readers()[reader]
    src = _policy_dir() if where is None else run / (where(run) if callable(where) else where)
    dst = tmp_path / src.name
    shutil.copytree(src, dst) if src.is_dir() else shutil.copy2(src, dst)
    bad = dst / (inner(run) if callable(inner) else inner) if inner else dst
    assert bad.is_file(), bad
    bad.write_bytes(damaged(bad.read_bytes(), how))
    try:
        fn(dst)
    except (ValueError, OSError) as e:
        msg = str(e)
        assert "\n" not in msg.strip(), f"{reader} ({how}): a message of several lines: {msg!r}"
        assert str(bad) in msg, f"{reader} ({how}): the message does not name the damaged file {bad}: {msg!r}"
        return
    except BaseException as e:
        pytest.fail(f"{reader} ({how}): {type(e).__module__}.{type(e).__name__} instead of a one-line ValueError/OSError: {str(e)[:300]!r}")
    pytest.fail(f"{reader} ({how}): the damaged input was read without an error")
