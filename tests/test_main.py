"""The main job's console entry point (`vlasteer_demo` -> vlasteer.main:main_job_main): a quick run end to end, and bad input.

The notebook nbs/09e_main.ipynb runs the steps one by one and checks that a rerun gives the same report byte for byte;
these tests run the entry point in a subprocess, as `make demo` does (with --quick), and check what it leaves behind.
"""
import json, re
from pathlib import Path

import pytest

from conftest import run_entry_point
import browser


def run_main(*args: str, timeout: int = 600):
    "Run `vlasteer.main.main_job_main()` as the console script would, with `args` as argv."
    return run_entry_point("vlasteer.main", "main_job_main", *args, timeout=timeout)


def one_error_line(p) -> str:
    "The one-line error a failed run printed (its last stderr line), checked to start with 'error: '."
    assert p.returncode == 1, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), p.stderr[-2000:]
    return last


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    "One quick run of the main job through its console entry point (dashed flags)."
    d = tmp_path_factory.mktemp("main")
    p = run_main("--out", str(d / "demo"), "--quick", "--quiet", "--seed", "0")
    assert p.returncode == 0, p.stderr[-4000:]
    return dict(dir=d, out=d / "demo", proc=p)


def test_quick_run_writes_a_complete_run_folder(quick_run):
    out, p = quick_run["out"], quick_run["proc"]
    assert [l for l in p.stdout.splitlines() if re.match(r"\[\d+/\d+\] ", l)][0].startswith("[1/11] ")
    assert "seconds per step:" in p.stdout
    for f in ("report.html", "provenance.json", "summary.json", "clusters/clusters.json", "ffn/projections.json",
              "contrast/drawer_manifest.json", "contrast/concept_map_all.json", "steering/sweep.json", "data/lerobot/meta/info.json"):
        assert (out / f).is_file(), f
    layer = json.loads((out / "summary.json").read_text())["residuals"]["layers"][0]
    for pair in ("drawer", "stove", "bowl"):
        assert (out / "directions" / f"layer{layer:02d}" / pair / "residual_direction.safetensors").is_file()
    assert (out / "sae" / f"layer{layer:02d}" / "cfg.json").is_file()
    assert [q.name for q in quick_run["dir"].iterdir() if q.name.startswith(".")] == []  # no temporary folder left


def test_provenance(quick_run):
    prov = json.loads((quick_run["out"] / "provenance.json").read_text())
    assert prov["format"] == "vlasteer.main_job/1" and prov["config"]["quick"] is True
    assert set(prov["versions"]) >= {"torch", "transformers", "lerobot", "sae-lens", "mujoco", "numpy", "vlasteer"}
    assert list(prov["seconds"])[-1] == "report" and all(v >= 0 for v in prov["seconds"].values())
    cmds = [c for s in prov["steps"].values() for c in s["commands"]]
    for script in ("vlasteer_generate_demos", "vlasteer_convert_libero", "vlasteer_ffn_probe", "vlasteer_cluster", "vlasteer_build_contrasting_pairs",
                   "vlasteer_map_concept_samples", "vlasteer_save_residuals", "vlasteer_slice_residuals", "vlasteer_train_sae", "vlasteer_sae_directions"):
        assert any(c.startswith(script + " ") for c in cmds), script


def test_report_is_self_contained(quick_run):
    from vlasteer.report import check_report
    text = (quick_run["out"] / "report.html").read_text(encoding="utf-8")
    check_report(text)  # plotly.js once, nothing from the network
    assert text.count('<div id="vlasteer-fig-') >= 8
    assert str(quick_run["dir"]) not in text  # no absolute paths: the same run gives the same file anywhere


@pytest.mark.skipif(browser.missing() is not None, reason=str(browser.missing()))
def test_report_draws_every_figure_offline(quick_run):
    "The report opens in a browser that can reach no other host, and every figure is drawn."
    with browser.chromium() as d:
        d.get((quick_run["out"] / "report.html").resolve().as_uri())
        n = d.execute_script("return document.querySelectorAll('div[id^=vlasteer-fig-]').length")
        browser.wait_for(d, f"document.querySelectorAll('.js-plotly-plot').length >= {n}", 60, "every figure drawn")
        assert n >= 8 and browser.severe(d) == []


def test_bad_input(tmp_path):
    assert "does not exist; create it first" in one_error_line(run_main("--out", str(tmp_path / "missing" / "run"), "--quick"))
    assert "num_demos must be at least 2" in one_error_line(run_main("--out", str(tmp_path / "run"), "--quick", "--num-demos", "1"))
    (tmp_path / "mine").mkdir(); (tmp_path / "mine" / "notes.txt").write_text("keep")
    assert "is not a vlasteer run folder" in one_error_line(run_main("--out", str(tmp_path / "mine"), "--quick"))
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    assert sorted(q.name for q in tmp_path.iterdir()) == ["mine"]  # nothing written


def test_report_leads_with_the_steering_answer(quick_run):
    "Section 1 of the report is the steering answer; summary.json keeps one goal row per pair a program can read."
    text = (quick_run["out"] / "report.html").read_text(encoding="utf-8")
    h2 = re.findall(r"<h2>([^<]+)</h2>", text)
    assert h2[0] == "1. The answer: can each pair be steered, and by which edit?", h2[:3]
    assert h2[1] == "2. Where the concept lives: closed-loop activation patching", h2[:3]
    goal = json.loads((quick_run["out"] / "summary.json").read_text())["steering"]["goal"]
    assert [g["pair"] for g in goal] == ["stove"]  # the quick study runs one pair
    assert {"pair", "best_method", "site", "alpha", "flip", "n", "flip_at_0", "random_control_max_flip", "met"} <= set(goal[0])
    assert (quick_run["out"] / "steering" / "localize.json").is_file()
