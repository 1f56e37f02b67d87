"""Command-line behaviour of vlasteer.clusters: real argv (the seed's dashed flags), exit status, one-line errors, no partial JSON.

The notebook nbs/05_clusters.ipynb tests the functions; these tests run the console entry point in a subprocess.
"""
import json, os, subprocess, sys
from pathlib import Path

import pytest

from vlasteer.ffn import ProbeConfig, Projections, probe_ffn, save_projections
from vlasteer.checkpoints import save_policy
from vlasteer.policy import tiny_policy

from conftest import entry_command, entry_env, run_entry_point


def run_cluster(*args: str):
    "Run `vlasteer_cluster` (vlasteer.clusters:cluster_main) with `args` as argv."
    return run_entry_point("vlasteer.clusters", "cluster_main", *args)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("proj")
    pol = tiny_policy("pi05")
    batches = [pol.example_observation(batch_size=2, seed=i, prompt=p) for i, p in
               enumerate(["open the top drawer of the cabinet", "close the top drawer of the cabinet"])]
    vlm = probe_ffn(pol, batches, "vlm", ProbeConfig(top_k_per_layer=16, top_n_tokens=10), params={"source": "config:tiny"})
    save_projections(d / "vlm.json", vlm)
    save_projections(d / "expert.json", probe_ffn(pol, batches[:1], "expert", ProbeConfig(top_k_per_layer=8)))
    save_projections(d / "novv.json", probe_ffn(pol, batches[:1], "vlm", ProbeConfig(top_k_per_layer=4, store_value_vectors=False)))
    (d / "broken.json").write_text('{"projections": [')
    seed_list = [r.to_dict() for r in vlm.records]  # the seed's bare-list layout
    (d / "seed.json").write_text(json.dumps(seed_list))
    tokens = sorted({t for r in vlm.records for t, _ in r.top_tokens if t.isalpha()})
    return dict(dir=d, ckpt=save_policy(pol, d / "ckpt"), known=tokens[:2])


def test_cluster_raw_with_keywords(files, tmp_path):
    out, html = tmp_path / "clusters.json", tmp_path / "map.html"
    r = run_cluster("--projections-path", str(files["dir"] / "vlm.json"), "--output-path", str(out), "--num-clusters", "4",
                    "--max-iterations", "50", "--normalize", "--random-seed", "3", "--layers", "0", "1",
                    "--keywords", *files["known"], "zzzz", "--k-sweep", "2", "3", "--tsne-path", str(html))
    assert r.returncode == 0, r.stderr
    assert "Top clusters by keyword score:" in r.stdout and "silhouette" in r.stdout
    assert "warning: keyword 'zzzz'" in r.stderr
    d = json.loads(out.read_text())
    assert len(d["clusters"]) == 4 and sum(len(c["members"]) for c in d["clusters"]) == 32
    assert {"cluster_id", "members", "token_summary"} <= set(d["clusters"][0])
    assert d["config"]["random_seed"] == 3 and d["keywords"][-1] == "zzzz" and len(d["keyword_ranking"]) == 4
    assert [row["k"] for row in d["k_sweep"]] == [2, 3] and -1 <= d["quality"]["silhouette"] <= 1
    assert html.exists() and "cdn.plot.ly" in html.read_text()
    # the same seed gives the same clusters, whatever the layout of the input
    out2 = tmp_path / "again.json"
    r = run_cluster("--projections-path", str(files["dir"] / "seed.json"), "--output-path", str(out2), "--num-clusters", "4",
                    "--max-iterations", "50", "--random-seed", "3", "--layers", "0-1")
    assert r.returncode == 0, r.stderr
    assert json.loads(out2.read_text())["clusters"] == d["clusters"]


@pytest.mark.parametrize("source", ["config", "checkpoint", "recorded"])
def test_cluster_semantic(files, tmp_path, source):
    out = tmp_path / "sem.json"
    extra = {"config": ["--model-config", "tiny"], "checkpoint": ["--model-checkpoint", str(files["ckpt"])], "recorded": []}[source]
    r = run_cluster("--projections-path", str(files["dir"] / "vlm.json"), "--output-path", str(out), "--num-clusters", "3",
                    "--use-semantic-space", "--top-k-tokens", "5", "--no-normalize", *extra)
    assert r.returncode == 0, r.stderr
    d = json.loads(out.read_text())
    assert d["space"] == "semantic" and d["config"]["normalize"] is False and d["params"]["token_space"]


def test_cluster_expert_raw(files, tmp_path):
    out = tmp_path / "ex.json"
    r = run_cluster("--projections-path", str(files["dir"] / "expert.json"), "--output-path", str(out), "--num-clusters", "3")
    assert r.returncode == 0, r.stderr
    d = json.loads(out.read_text())
    assert d["tower"] == "expert" and all(c["token_summary"] == [] for c in d["clusters"])


@pytest.mark.parametrize("case", ["no_vectors", "k_too_large", "unknown_keywords", "layers", "semantic_expert", "missing",
                                  "broken", "no_parent", "model_config"])
def test_bad_input(files, tmp_path, case):
    out = tmp_path / "out.json"
    src = {"no_vectors": "novv.json", "semantic_expert": "expert.json", "missing": "nope.json", "broken": "broken.json"}.get(case, "vlm.json")
    extra = {"k_too_large": ["--num-clusters", "33"], "unknown_keywords": ["--keywords", "fridge", "oven"], "layers": ["--layers", "2"],
             "semantic_expert": ["--use-semantic-space"], "model_config": ["--use-semantic-space", "--model-config", "huge"]}.get(case, [])
    if case == "no_parent": out = tmp_path / "missing" / "out.json"
    r = run_cluster("--projections-path", str(files["dir"] / src), "--output-path", str(out), "--num-clusters", "4", *extra)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    want = {"no_vectors": "--store-value-vectors", "k_too_large": "more than the 32 value vectors", "unknown_keywords": "no keyword",
            "layers": "out of range", "semantic_expert": "expert tower has none", "missing": "no projections file",
            "broken": "not valid JSON", "no_parent": "does not exist", "model_config": "unknown --model-config"}[case]
    assert want in lines[0], lines[0]
    assert not out.exists()
    assert not [p.name for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_overwrite_rule(files, tmp_path):
    out, html = tmp_path / "clusters.json", tmp_path / "map.html"
    args = ["--projections-path", str(files["dir"] / "vlm.json"), "--output-path", str(out), "--num-clusters", "3", "--tsne-path", str(html)]
    assert run_cluster(*args).returncode == 0
    out.write_text('{"mine": 1}')
    r = run_cluster(*args)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and f"--output-path {out} exists; pass --overwrite to replace it" in lines[0], r.stderr
    assert json.loads(out.read_text()) == {"mine": 1}
    out.unlink()
    r = run_cluster(*args)                                           # the map alone exists: refused too, nothing written
    assert r.returncode == 1 and f"--tsne-path {html} exists" in r.stderr and not out.exists()
    r = run_cluster(*args, "--overwrite")
    assert r.returncode == 0, r.stderr
    assert len(json.loads(out.read_text())["clusters"]) == 3
