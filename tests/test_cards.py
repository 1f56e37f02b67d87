"""vlasteer_feature_cards as a console script: bad input (one-line errors, exit codes), and the HTML it writes opened
offline in headless chromium (every frame image decoded, every histogram drawn, no request outside the page).

The notebook nbs/03b_cards.ipynb tests the functions (TopK against a full sort, shards, cards, token values).
"""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import browser
from conftest import console_module, run_entry_point
from vlasteer.cards import FeatureCard, read_cards, write_activations, write_cards
from vlasteer.data import convert_libero_to_lerobot, synthetic_libero_demo, write_libero_hdf5

ENTRY = "feature_cards_main"
REPO_ID = "vlasteer/test_cards"


def run(*args: str):
    return run_entry_point(console_module(ENTRY), ENTRY, *args, timeout=300)


def one_error_line(r) -> str:
    "The failing command's message: exactly one line on stderr, starting with 'error:'."
    assert r.returncode != 0, r.stdout
    lines = [l for l in r.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr[-2000:]
    return lines[0]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    "A small LeRobot dataset of two tasks (synthetic LIBERO demos, 16 x 16 frames)."
    d = tmp_path_factory.mktemp("cards")
    src = d / "libero"; src.mkdir()
    for j, task in enumerate(("turn on the stove", "turn off the stove")):
        demos = [synthetic_libero_demo(num_frames=8 + i, image_size=16, seed=10 * j + i) for i in range(2)]
        write_libero_hdf5(src / f"{task.replace(' ', '_')}_demo.hdf5", demos, task)
    return convert_libero_to_lerobot(src, REPO_ID, d / "lerobot")


@pytest.fixture(scope="module")
def activations(dataset) -> Path:
    "Activations of five units over every frame of the dataset."
    n = json.loads((dataset / "meta" / "info.json").read_text())["total_frames"]
    a = torch.as_tensor(np.random.default_rng(0).standard_normal((n, 5)), dtype=torch.float32)
    return write_activations(dataset.parent / "acts.safetensors", a, np.arange(n), [f"unit {j}" for j in range(5)],
                             "sae_latent", "vlm.blocks.1.hook_resid_post")


def test_bad_input(tmp_path, dataset, activations):
    root = str(dataset)
    assert "missing --lerobot-root, --output" in one_error_line(run())
    assert "give exactly one of --cards or --activations" in one_error_line(
        run("--lerobot-root", root, "--output", str(tmp_path / "a.html")))
    assert "give exactly one of" in one_error_line(
        run("--lerobot-root", root, "--output", str(tmp_path / "a.html"), "--cards", "x.json", "--activations", "y"))
    assert "no feature cards JSON at" in one_error_line(
        run("--lerobot-root", root, "--output", str(tmp_path / "a.html"), "--cards", str(tmp_path / "none.json")))
    (tmp_path / "bad.json").write_text("{not json")
    assert "is not valid JSON" in one_error_line(
        run("--lerobot-root", root, "--output", str(tmp_path / "a.html"), "--cards", str(tmp_path / "bad.json")))
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 40)
    assert "cannot read activations file" in one_error_line(
        run("--lerobot-root", root, "--output", str(tmp_path / "a.html"), "--activations", str(tmp_path / "junk.safetensors")))
    write_cards([FeatureCard("far", "other", [[10 ** 6, 1.0]])], tmp_path / "far.json")
    assert "frame index 1000000 is not in dataset" in one_error_line(
        run("--lerobot-root", root, "--output", str(tmp_path / "a.html"), "--cards", str(tmp_path / "far.json")))
    assert "no LeRobot dataset at" in one_error_line(
        run("--lerobot-root", str(tmp_path), "--output", str(tmp_path / "a.html"), "--activations", str(activations)))
    assert "does not exist; create it first" in one_error_line(
        run("--lerobot-root", root, "--output", str(tmp_path / "no" / "a.html"), "--activations", str(activations)))
    (tmp_path / "old.html").write_text("keep")
    assert "pass --overwrite" in one_error_line(
        run("--lerobot-root", root, "--output", str(tmp_path / "old.html"), "--activations", str(activations)))
    assert (tmp_path / "old.html").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json", "far.json", "junk.safetensors", "old.html"]


def test_cli_builds_cards(tmp_path, dataset, activations):
    r = run("--lerobot-root", str(dataset), "--output", str(tmp_path / "cards.html"), "--activations", str(activations),
            "--k", "3", "--sample", "2", "--cards-out", str(tmp_path / "cards.json"))
    assert r.returncode == 0, r.stderr[-2000:]
    cards = read_cards(tmp_path / "cards.json")
    assert [c.label for c in cards] == [f"unit {j}" for j in range(5)] and {c.kind for c in cards} == {"sae_latent"}
    assert all(len(c.top) == 3 and len(c.random) == 2 and set(c.hist) <= {"turn on the stove", "turn off the stove"}
               for c in cards)
    again = run("--lerobot-root", str(dataset), "--output", str(tmp_path / "cards.html"), "--cards",
                str(tmp_path / "cards.json"), "--overwrite")
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads((tmp_path / "cards.json").read_text())["format"] == "vlasteer.cards/1"


NO_REMOTE = """return performance.getEntriesByType('resource').map(e => e.name)
  .filter(u => !u.startsWith('data:') && !u.startsWith('file:') && !u.startsWith('blob:'))"""


@pytest.mark.skipif(browser.missing() is not None, reason=str(browser.missing()))
def test_html_opens_offline(tmp_path, dataset, activations):
    "The page opens with no other host reachable: every image decoded, every histogram drawn, no request made."
    out = tmp_path / "cards.html"
    r = run("--lerobot-root", str(dataset), "--output", str(out), "--activations", str(activations), "--k", "4")
    assert r.returncode == 0, r.stderr[-2000:]
    browser.ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with browser.chromium() as d:
        d.get(out.resolve().as_uri())
        browser.wait_for(d, "document.readyState === 'complete'", what="the page to load")
        browser.wait_for(d, "document.querySelectorAll('.js-plotly-plot .main-svg').length >= 5", 60, "5 histograms drawn")
        imgs = d.execute_script("return [...document.images].map(i => [i.complete, i.naturalWidth, i.src.slice(0, 22)])")
        assert len(imgs) == 5 * 2 * (4 + 8), len(imgs)  # 5 cards x 2 cameras x (4 top + 8 random frames)
        assert all(c and w > 0 and s == "data:image/png;base64," for c, w, s in imgs), imgs[:5]
        assert d.execute_script(NO_REMOTE) == []
        assert browser.severe(d) == []
        d.save_screenshot(str(browser.ARTIFACTS / "feature_cards.png"))
