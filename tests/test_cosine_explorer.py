"""`CosineExplorer` (08c_cosines) in JupyterLab, driven in a real browser.

A scratch notebook builds the explorer on synthetic pair directions at three layers; the test picks a layer,
a space, clicks a cell of the matrix, switches to the across-layers view and hides a pair, reading after each
step what the plotly figure in the cell's output shows. Screenshots land in test-artifacts/cosine/.
"""
import json, time

import nbformat, pytest
from browser import ARTIFACTS, chromium, missing, wait_for
from test_lab import lab  # noqa: F401  (the JupyterLab fixture, shared)

SHOTS = ARTIFACTS / "cosine"

SETUP = '''\
import torch
from vlasteer.cosines import CosineExplorer, cosine_data
from vlasteer.directions import LatentMean, PairDirection
g = torch.Generator().manual_seed(0)
noisy = lambda v: v + 0.1 * torch.randn(v.shape, generator=g)
def direction(name, layer, latent, raw):
    resid = noisy(raw)  # what an SAE would decode: close to the raw difference
    vs = dict(latent=latent, residual=resid, raw=raw)
    halves = {k: (noisy(v), noisy(v)) for k, v in vs.items()}
    return PairDirection(name, LatentMean("pos", 10, latent), LatentMean("neg", 10, 0 * latent), latent, resid,
                         raw, dict(latent=0.9, residual=0.9, raw=0.9), layer, None, halves)
base = {p: torch.randn(16, generator=g) for p in ("drawer", "bowl")}
dirs = {}
for l, t in ((1, 0.3), (2, 0.7), (3, 0.9)):  # stove turns against the drawer with depth
    stove = -t * base["drawer"] + (1 - t) * torch.randn(16, generator=g)
    raw = dict(drawer=base["drawer"], stove=stove, bowl=base["bowl"])
    dirs[l] = [direction(p, l, torch.relu(torch.randn(64, generator=g)) - 0.5, r) for p, r in raw.items()]
data = cosine_data(dirs)
'''

# what the figure in the cell shows, as JSON (null while none is drawn)
STATE = """return (cell => { const g = cell.querySelector('.js-plotly-plot');
  if (!g || !g.layout || !g._fullData || !g.querySelector('.main-svg')) return null;
  return JSON.stringify({title: (g.layout.title && g.layout.title.text) || '', types: g._fullData.map(t => t.type),
    annotations: (g.layout.annotations || []).map(a => a.text), x: g._fullData.map(t => (t.x || []).slice(0, 12))});
})(arguments[0]);"""


@pytest.mark.skipif(missing() is not None, reason=str(missing()))
def test_cosine_explorer_clicks(lab):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select
    name = "cosine_explorer.ipynb"
    cells = [nbformat.v4.new_code_cell(SETUP), nbformat.v4.new_code_cell("cx = CosineExplorer(data)\ncx")]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, lab["root"] / name)
    SHOTS.mkdir(parents=True, exist_ok=True)
    with chromium(1400, 1000) as d:
        shot = lambda tag: d.save_screenshot(str(SHOTS / f"CosineExplorer-{tag}.png"))
        d.get(f"{lab['url']}/lab/workspaces/cosine/tree/{name}?token={lab['token']}")
        nb_sel = ".jp-NotebookPanel:not(.lm-mod-hidden):not([aria-hidden=\"true\"]) .jp-Notebook"
        wait_for(d, f"window.jupyterapp && document.querySelector('{nb_sel} .jp-Cell')", 90, "the notebook to open")
        wait_for(d, "document.querySelector('.jp-Notebook-ExecutionIndicator, .jp-Toolbar-kernelStatus')", 90,
                 "the kernel")
        time.sleep(2)
        d.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        last = f"{nb_sel} .jp-Cell:nth-child(2)"
        try:
            wait_for(d, f"document.querySelector('{last} .jp-OutputArea .widget-dropdown select')", 150,
                     "the explorer's controls")
            wait_for(d, f"document.querySelector('{last} .jp-OutputArea .js-plotly-plot .main-svg')", 60,
                     "the explorer's figure")
        finally:
            shot("0-ran")
            errs = d.execute_script("return [...document.querySelectorAll('.jp-OutputArea-output"
                                    "[data-mime-type=\"application/vnd.jupyter.stderr\"]')]"
                                    ".map(e => e.innerText.slice(0, 600))")
        assert not any("Error" in e for e in errs), errs
        cell = d.find_element(By.CSS_SELECTOR, last)
        d.execute_script("arguments[0].scrollIntoView({block: 'start'})", cell)
        state = lambda: json.loads(d.execute_script(STATE, cell) or "null")

        def after(action, ok, what):  # do `action`, then wait until the figure satisfies `ok`
            before = state()
            action()
            deadline = time.time() + 30
            while time.time() < deadline:
                s = state()
                if s and s != before and ok(s): return s
                time.sleep(0.25)
            raise AssertionError(f"the figure did not show {what}; it shows {state()}")

        s = state()
        assert s["title"] == "cosine between pair directions: decoded Δz @ W_dec, all layers", s
        assert s["types"] == ["heatmap"] * 3 + ["scatter"], s  # every layer, and drawer · stove through depth
        assert "cos(drawer, stove) through depth" in s["annotations"], s

        layer = next(e for e in cell.find_elements(By.CSS_SELECTOR, ".widget-dropdown select"))
        s = after(lambda: Select(layer).select_by_visible_text("layer 2"), lambda s: s["title"].endswith("layer 2"),
                  "layer 2")
        assert s["types"] == ["heatmap", "bar"], s  # one matrix, and what makes drawer · stove
        assert any(a.startswith("cos(drawer, stove) = ") for a in s["annotations"]), s
        shot("1-layer")

        toggle = lambda text: next(b for b in cell.find_elements(By.CSS_SELECTOR, ".widget-toggle-buttons button")
                                   if b.text == text)
        raw = toggle("raw mean difference")
        s = after(raw.click, lambda s: "raw mean difference, layer 2" in s["title"], "the raw space")
        bars_before = s["x"][-1]
        assert all(x.startswith("dim ") or x == "rest" for x in bars_before), s  # residual dimensions' shares
        shot("2-space")

        cell_button = lambda tip: next(b for b in cell.find_elements(By.CSS_SELECTOR, ".vlasteer-cell")
                                       if b.get_attribute("title") == tip)
        btn = cell_button("drawer · bowl")
        assert btn.text.startswith(("+", "-", "−")), btn.text  # the cell's cosine at layer 2
        s = after(btn.click, lambda s: any(a.startswith("cos(drawer, bowl) = ") for a in s["annotations"]),
                  "the clicked cell")
        assert s["types"][-1] == "bar" and s["x"][-1] != bars_before, s  # other dimensions make this cosine
        selected = [b.get_attribute("title") for b in cell.find_elements(By.CSS_SELECTOR, ".vlasteer-cell.mod-info")]
        assert selected == ["drawer · bowl"], selected  # the grid marks the clicked cell (its buttons are redrawn)
        shot("3-cell")

        s = after(toggle("across layers").click, lambda s: s["title"].startswith("each pair's direction across layers"),
                  "the across-layers view")
        assert s["types"] == ["heatmap"] * 4, s  # three pairs layer × layer, then decoded vs raw
        shot("4-layers")

        bowl = next(b for b in cell.find_elements(By.CSS_SELECTOR, "button") if b.get_attribute("title") == "show bowl")
        s = after(bowl.click, lambda s: len(s["types"]) == 3, "two pairs")
        assert "bowl: layer × layer" not in s["annotations"], s
        shot("5-pairs")
