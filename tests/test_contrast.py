"""Command-line behaviour of vlasteer.contrast: real argv (the seed's dashed flags), exit status, one-line errors, no partial output.

The notebook nbs/06_contrast.ipynb tests the functions; these tests run the console entry points in a subprocess.
"""
import json, os, subprocess, sys
from pathlib import Path

import numpy as np
import pytest

from vlasteer.data import convert_libero_to_lerobot, synthetic_libero_demo, write_libero_hdf5

from conftest import entry_command, entry_env, run_entry_point


def run_entry(entry: str, *args: str):
    "Run `vlasteer.contrast.<entry>()` as a console script would, with `args` as argv."
    return run_entry_point("vlasteer.contrast", entry, *args)


def _demo(sign: int, T: int, seed: int):
    "A LIBERO demo whose eef y moves by sign * 0.2 in its middle steps and whose eef z rises for every task."
    d = synthetic_libero_demo(num_frames=T, image_size=8, seed=seed)
    ee = d.obs["ee_states"].copy()
    ee[:, 1] += sign * 0.2 * np.clip((np.arange(T) - 4) / 4, 0, 1)
    ee[:, 2] += np.linspace(0, 0.3, T)
    d.obs["ee_states"], d.obs["ee_pos"] = ee, ee[:, :3]
    return d


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("contrast")
    (d / "libero").mkdir()
    write_libero_hdf5(d / "libero" / "slide_left_demo.hdf5", [_demo(+1, 12 + j, j) for j in range(3)], "slide left", env_name="SlideEnv")
    write_libero_hdf5(d / "libero" / "slide_right_demo.hdf5", [_demo(-1, 14 + j, 9 + j) for j in range(3)], "slide right", env_name="SlideEnv")
    root = convert_libero_to_lerobot(d / "libero", "test/slide", d / "lerobot")
    return dict(dir=d, libero=d / "libero", root=root)


def _one_line_error(r, want: str):
    assert r.returncode != 0, r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert want in lines[0], lines[0]


def test_manifest_then_concept_map(data, tmp_path):
    man, cmap = tmp_path / "m.json", tmp_path / "cm.json"
    r = run_entry("build_contrasting_pairs_main", "--backend", "lerobot", "--lerobot-root", str(data["root"]), "--repo-id", "test/slide",
                  "--task-a-text", "slide left", "--task-b-text", "slide right", "--output", str(man), "--pad", "1", "--max-demos-per-task", "2")
    assert r.returncode == 0, r.stderr
    assert "axis state[1] (eef_y)" in r.stdout and "segments slide left=2, slide right=2" in r.stdout
    m = json.loads(man.read_text())
    assert m["axis"]["index"] == 1 and set(m["axis"]["mean_delta_per_task"]) == {"slide left", "slide right"}
    assert m["axis"]["effect_size"] > 0
    seg = m["segments"][0]
    assert {"task", "file", "demo", "start_step", "end_step", "axis_delta", "axis_values", "episode_index"} <= set(seg)
    assert [s["episode_index"] for s in m["segments"]] == [0, 1, 3, 4]
    # the seed spelled --repo_id with an underscore; it still works
    r = run_entry("map_concept_samples_main", "--manifest-path", str(man), "--output-path", str(cmap),
                  "--lerobot-root", str(data["root"]), "--repo_id", "test/slide")
    assert r.returncode == 0, r.stderr
    assert "[concept-map] slide left: 2 segments" in r.stdout
    c = json.loads(cmap.read_text())
    assert {"manifest", "lerobot_root", "repo_id", "concept_count", "sample_count", "concepts"} <= set(c)
    assert c["sample_count"] == 12 + 13 + 14 + 14 + 15 + 16 and c["concept_count"] == {"slide left": 2, "slide right": 2}
    r0 = c["concepts"]["slide right"][0]                      # episode 3 starts after 12 + 13 + 14 frames
    assert r0["episode_index"] == 3 and r0["start_index"] == 39 + r0["frame_start"]
    assert r0["length"] == r0["end_index"] - r0["start_index"] + 1 == r0["frame_end"] - r0["frame_start"] + 1
    # without --lerobot-root the map uses the manifest's dataset
    r = run_entry("map_concept_samples_main", "--manifest-path", str(man), "--output-path", str(tmp_path / "cm2.json"), "--quiet")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "cm2.json").read_text())["concepts"] == c["concepts"]


def test_hdf5_backend_agrees(data, tmp_path):
    a, b = tmp_path / "lr.json", tmp_path / "h5.json"
    r = run_entry("build_contrasting_pairs_main", "--lerobot-root", str(data["root"]), "--repo-id", "test/slide",
                  "--task-a-index", "0", "--task-b-index", "1", "--output", str(a), "--quiet")
    assert r.returncode == 0, r.stderr
    # seed-style: files by name, looked up in --search-root; backend inferred (hdf5), LeRobot's `state`
    r = run_entry("build_contrasting_pairs_main", "--task-a-file", "slide_left_demo", "--task-b-file", "slide_right_demo.hdf5",
                  "--search-root", str(data["libero"]), "--state-key", "state", "--output", str(b), "--quiet")
    assert r.returncode == 0, r.stderr
    ma, mb = json.loads(a.read_text()), json.loads(b.read_text())
    key = lambda m: [(s["task"], s["start_step"], s["end_step"], s["episode_index"]) for s in m["segments"]]
    assert key(ma) == key(mb) and ma["axis"]["index"] == mb["axis"]["index"]
    assert mb["params"]["backend"] == "hdf5" and ma["params"]["backend"] == "lerobot"


@pytest.mark.parametrize("case", ["absent_task", "no_opposite", "same_task", "other_conversion", "no_output"])
def test_bad_input(data, tmp_path, case):
    out = tmp_path / "out.json"
    base = ["--lerobot-root", str(data["root"]), "--repo-id", "test/slide"]
    if case == "absent_task":
        r = run_entry("build_contrasting_pairs_main", *base, "--task-a-text", "slide up", "--task-b-text", "slide right", "--output", str(out))
        _one_line_error(r, "'slide up' is not in dataset test/slide")
    if case == "no_opposite":
        r = run_entry("build_contrasting_pairs_main", *base, "--task-a-text", "slide left", "--task-b-text", "slide right",
                      "--min-abs-delta", "5", "--output", str(out))
        _one_line_error(r, "no state dimension moves in opposite directions")
    if case == "same_task":
        r = run_entry("build_contrasting_pairs_main", *base, "--task-a-text", "slide left", "--task-b-text", "Slide Left", "--output", str(out))
        _one_line_error(r, "contrast two different tasks")
    if case == "other_conversion":
        man = tmp_path / "m.json"
        m = {"axis": {"index": 1, "effect_size": 1.0, "mean_delta_per_task": {"slide left": 0.2, "slide right": -0.2}},
             "segments": [{"task": "slide left", "file": "x", "demo": "episode_000009", "start_step": 0, "end_step": 3,
                           "axis_delta": 0.1, "axis_values": [0, 0, 0, 0.1], "episode_index": 9}]}
        man.write_text(json.dumps(m))
        r = run_entry("map_concept_samples_main", "--manifest-path", str(man), "--output-path", str(out), *base)
        _one_line_error(r, "different conversions")
    if case == "no_output":
        r = run_entry("build_contrasting_pairs_main", *base, "--task-a-text", "slide left", "--task-b-text", "slide right")
        _one_line_error(r, "missing --output")
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left


def _manifest(data, path: Path) -> dict:
    r = run_entry("build_contrasting_pairs_main", "--lerobot-root", str(data["root"]), "--repo-id", "test/slide", "--task-a-text", "slide left",
                  "--task-b-text", "slide right", "--pad", "1", "--output", str(path), "--quiet")
    assert r.returncode == 0, r.stderr
    return json.loads(path.read_text())


def test_manifest_task_absent_from_dataset(data, tmp_path):
    "A manifest whose task the dataset does not hold is refused, unless the user maps it explicitly."
    m = _manifest(data, tmp_path / "m.json")
    short = {"slide left": "left", "slide right": "right"}
    for s in m["segments"]: s["task"] = short[s["task"]]; s.pop("task_text", None)
    m["axis"]["mean_delta_per_task"] = {short[k]: v for k, v in m["axis"]["mean_delta_per_task"].items()}
    (tmp_path / "short.json").write_text(json.dumps(m))
    base = ["--manifest-path", str(tmp_path / "short.json"), "--lerobot-root", str(data["root"]), "--repo-id", "test/slide"]
    r = run_entry("map_concept_samples_main", *base, "--output-path", str(tmp_path / "cm.json"))
    _one_line_error(r, "segment 0 is of task 'left', which dataset test/slide does not hold")
    assert "--task-map" in r.stderr and not (tmp_path / "cm.json").exists()
    r = run_entry("map_concept_samples_main", *base, "--output-path", str(tmp_path / "cm.json"), "--quiet",
                  "--task-map", "left=slide left", "right=slide right")
    assert r.returncode == 0, r.stderr
    c = json.loads((tmp_path / "cm.json").read_text())
    assert set(c["concepts"]) == {"left", "right"} and all(x["task"] == "slide left" for x in c["concepts"]["left"])
    # every mapped segment lands on an episode of the mapped task (a wrong map is caught, not trusted)
    r = run_entry("map_concept_samples_main", *base, "--output-path", str(tmp_path / "cm2.json"),
                  "--task-map", "left=slide right", "right=slide left")
    _one_line_error(r, "different conversions")


def test_overwrite_rule(data, tmp_path):
    man, cmap = tmp_path / "m.json", tmp_path / "cm.json"
    _manifest(data, man)
    args = ["--manifest-path", str(man), "--output-path", str(cmap), "--quiet"]
    assert run_entry("map_concept_samples_main", *args).returncode == 0
    for path in (man, cmap): path.write_text('{"mine": 1}')
    r = run_entry("build_contrasting_pairs_main", "--lerobot-root", str(data["root"]), "--repo-id", "test/slide", "--task-a-text", "slide left",
                  "--task-b-text", "slide right", "--output", str(man))
    _one_line_error(r, f"--output {man} exists; pass --overwrite to replace it")
    _manifest(data, tmp_path / "m3.json")
    r = run_entry("map_concept_samples_main", "--manifest-path", str(tmp_path / "m3.json"), "--output-path", str(cmap))
    _one_line_error(r, f"--output-path {cmap} exists; pass --overwrite")
    assert json.loads(man.read_text()) == {"mine": 1} and json.loads(cmap.read_text()) == {"mine": 1}  # untouched
    r = run_entry("map_concept_samples_main", "--manifest-path", str(tmp_path / "m3.json"), "--output-path", str(cmap), "--overwrite", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "concepts" in json.loads(cmap.read_text())


def test_non_finite_values_are_refused_naming_the_file(data, tmp_path):
    import pyarrow as pa, pyarrow.parquet as pq, shutil
    m = _manifest(data, tmp_path / "m.json")
    m["segments"][1]["axis_values"][0] = float("nan")
    (tmp_path / "nan.json").write_text(json.dumps(m))                # Python's json writes NaN; the reader refuses it
    r = run_entry("map_concept_samples_main", "--manifest-path", str(tmp_path / "nan.json"), "--output-path", str(tmp_path / "cm.json"))
    _one_line_error(r, f"{tmp_path / 'nan.json'}: segment 1 has a non-finite or missing axis value")
    # a dataset whose state holds a NaN: the manifest builder names the data file
    root = tmp_path / "ds"; shutil.copytree(data["root"], root)
    f = root / "data" / "chunk-000" / "file-000.parquet"
    t = pq.read_table(f)
    states = t.column("state").to_pylist(); states[20][1] = float("nan")
    pq.write_table(t.set_column(t.schema.get_field_index("state"), t.schema.field("state"), pa.array(states, t.schema.field("state").type)), f)
    r = run_entry("build_contrasting_pairs_main", "--lerobot-root", str(root), "--repo-id", "test/slide", "--task-a-text", "slide left",
                  "--task-b-text", "slide right", "--output", str(tmp_path / "out.json"))
    _one_line_error(r, f"({f}) has NaN or inf in 'state'")
    assert not (tmp_path / "out.json").exists()
