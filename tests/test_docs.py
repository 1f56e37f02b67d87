"""The docs site, built as nbdev builds it up to Quarto (scripts/docs_check.py) and checked in a real browser.

Every page is opened in headless chromium with every host but localhost unreachable: no console errors,
every plotly figure drew, every explorer's static figure is there, every internal link resolves.
Screenshots land in test-artifacts/docs/.
"""
import functools, http.server, os, re, subprocess, sys, threading
from pathlib import Path
from urllib.parse import urlsplit, unquote
import pytest
from browser import ARTIFACTS, chromium, free_port, missing, severe, wait_for

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "_docs_html"
SHOTS = ARTIFACTS / "docs"
EXPLORER_CLASS = re.compile(r"^class (\w+Explorer)\b", re.M)
EXPLORER_REPR = re.compile(r"^([A-Z]\w*Explorer)\(")


def notebooks() -> list:
    return sorted(p for p in (ROOT / "nbs").glob("*.ipynb"))


def explorer_classes() -> set:
    "Every explorer the package defines (a class named *Explorer), found by scanning vlasteer/; bases of others excluded."
    src = "\n".join(p.read_text() for p in (ROOT / "vlasteer").glob("*.py"))
    bases = set(re.findall(r"^class \w+Explorer\((\w+Explorer)\)", src, re.M))  # e.g. CardExplorer: shown through its subclasses
    return set(EXPLORER_CLASS.findall(src)) - bases


def explorer_outputs(nb_path: Path) -> list:
    "Names of the explorers a notebook displays in its committed outputs."
    import nbformat
    nb = nbformat.read(nb_path, as_version=4)
    return [m[1] for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if (m := EXPLORER_REPR.match("".join((o.get("data") or {}).get("text/plain", ""))))]


def test_docs_processing_runs_only_export_and_import_cells():
    "nbdev's docs step executes every cell holding an import: one that mixes imports with other code breaks it (nbdev FAQ)."
    import warnings
    from nbdev.process import NBProcessor
    from nbdev.processors import _do_eval
    bad = []
    for p in notebooks():
        for c in NBProcessor(p, procs=[], process=True).nb.cells:
            if c.cell_type != "code": continue
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                _do_eval(c)
            if any("imports and other code" in str(x.message) for x in w):
                bad.append(f"{p.name} cell {c.idx_}: {c.source.splitlines()[0][:70]}")
    assert not bad, "move these imports into the notebook's import cell (exported, or the hidden dev-imports cell, imports only):\n" + "\n".join(bad)


@pytest.fixture(scope="module")
def site():
    if os.environ.get("VLASTEER_DOCS_PREBUILT") and (SITE / "index.html").exists(): return SITE  # `make docs` just ran
    r = subprocess.run([sys.executable, "scripts/docs_check.py", "--out", "_docs_html"], cwd=ROOT,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    return SITE


@pytest.fixture(scope="module")
def server(site):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a): pass
    handler = functools.partial(Quiet, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_one_page_per_notebook_in_order(site):
    from bs4 import BeautifulSoup
    import nbformat
    from nbdev.config import get_config
    cfg = get_config(path=ROOT)
    pages = sorted(p.name for p in site.glob("*.html"))
    assert len(pages) == len(notebooks()), pages
    side = [a["href"] for a in BeautifulSoup((site / "index.html").read_text(), "html.parser").select(".vl-sidebar li a")]
    assert side[0] == "index.html" and sorted(side) == pages
    want = [p.stem for p in notebooks() if p.stem != "index"]  # nbdev orders by file name: 00_, 00a_, 01_, ...
    assert [s.removesuffix(".html") for s in side[1:]] == [re.sub(r"^\d+[a-z]?_", "", w) for w in want]
    # every exported symbol has its show_doc section (an id on the page, as Quarto writes it)
    import importlib, inspect
    for nb in notebooks():
        src = "\n".join(c.source for c in nbformat.read(nb, as_version=4).cells)
        mod = re.search(r"^#\|\s*default_exp\s+(\S+)", src, re.M)
        if mod is None: continue
        m = importlib.import_module(f"{cfg.lib_name}.{mod[1]}")
        names = [n for n in m.__all__ if (inspect.isfunction(getattr(m, n)) or inspect.isclass(getattr(m, n)))
                 and getattr(getattr(m, n), "__module__", "") == m.__name__]
        html = (site / f"{mod[1]}.html").read_text()
        absent = [n for n in names if f'id="{n.lower()}"' not in html]
        assert not absent, f"{mod}.html has no show_doc section for {absent}"


def test_internal_links_resolve(site):
    from bs4 import BeautifulSoup
    ids, broken = {}, []
    soups = {p.name: BeautifulSoup(p.read_text(), "html.parser") for p in site.glob("*.html")}
    for name, s in soups.items(): ids[name] = {t["id"] for t in s.find_all(id=True)}
    for name, s in soups.items():
        for a in s.find_all("a", href=True):
            u = urlsplit(a["href"])
            if u.scheme or u.netloc or a["href"].startswith("mailto:"): continue
            target = unquote(u.path) or name
            if not (site / target).exists(): broken.append(f"{name}: {a['href']} (no such page)"); continue
            if u.fragment and target.endswith(".html") and u.fragment not in ids.get(target, set()):
                broken.append(f"{name}: {a['href']} (no #{u.fragment} on {target})")
        for t in s.find_all(["script", "link", "img"]):
            src = t.get("src") or t.get("href")
            if src and not urlsplit(src).scheme and not (site / unquote(urlsplit(src).path)).exists():
                broken.append(f"{name}: {src} (asset missing)")
    assert not broken, "\n".join(broken[:40])


def test_explorers_shown_in_notebooks():
    "Each explorer the package defines is displayed in a committed notebook output, so the docs show its static figure."
    shown = {e for p in notebooks() for e in explorer_outputs(p)}
    assert explorer_classes(), "no explorer classes found in vlasteer/"
    assert explorer_classes() <= shown, f"not displayed in any notebook's outputs: {sorted(explorer_classes() - shown)} (run scripts/fill_outputs.py)"


DRAWN = """
const figs = [...document.querySelectorAll('.plotly-graph-div')];
return figs.map(g => { const svg = g.querySelector('.main-svg'); const r = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
  return {id: g.id, drawn: g.classList.contains('js-plotly-plot'), traces: (g._fullData || []).length,
          marks: g.querySelectorAll('.trace, .hm, .table, .heatmaplayer image, .barlayer path, .scatterlayer path').length,
          w: r.width, h: r.height}; });
"""


@pytest.mark.skipif(missing() is not None, reason=str(missing()))
def test_pages_in_browser_offline(site, server):
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*.png"): old.unlink()
    problems, n_figs = [], 0
    with chromium() as d:
        for page in sorted(site.glob("*.html")):
            name = page.name
            d.get(f"{server}/{name}")
            wait_for(d, "document.readyState === 'complete'", what=f"{name} to load")
            n = d.execute_script("return document.querySelectorAll('.plotly-graph-div').length")
            if n: wait_for(d, "[...document.querySelectorAll('.plotly-graph-div')].every(g => g.querySelector('.main-svg'))",
                           timeout=30, what=f"the {n} figures on {name} to draw")
            figs = d.execute_script(DRAWN)
            n_figs += len(figs)
            for i, f in enumerate(figs):
                if not (f["drawn"] and f["traces"] and f["marks"] and f["w"] > 100 and f["h"] > 100):
                    problems.append(f"{name}: figure {i} did not draw: {f}")
            # explorers: the static figure of each explorer output is on the page and drew
            statics = d.execute_script("return [...document.querySelectorAll('.vl-explorer-static')].map("
                                       "e => [e.dataset.explorer, !!e.querySelector('.js-plotly-plot .main-svg')])")
            for e, ok in statics:
                if not ok: problems.append(f"{name}: the static figure of {e} is not drawn")
            problems += [f"{name}: console: {m}" for m in severe(d)]
            d.save_screenshot(str(SHOTS / f"{page.stem}.png"))
            for i, el in enumerate(d.find_elements("css selector", ".plotly-graph-div")[:8]):
                d.execute_script("arguments[0].scrollIntoView({block: 'center'})", el)
                el.screenshot(str(SHOTS / f"{page.stem}-fig{i}.png"))
    assert not problems, "\n".join(problems[:40])
    # the pages show what the notebooks display: one static figure per explorer output
    from bs4 import BeautifulSoup
    want = sorted(e for p in notebooks() for e in explorer_outputs(p))
    got = sorted(t["data-explorer"] for p in site.glob("*.html")
                 for t in BeautifulSoup(p.read_text(), "html.parser").select(".vl-explorer-static"))
    assert got == want, (got, want)
