"""Build the docs site up to Quarto, then render it to plain HTML that works offline.

`nbdev_docs` = nbdev's notebook processing (`nbdev_proc_nbs`: front matter, `show_doc` for every
exported symbol, hidden cells dropped, doc links) + Quarto. Where Quarto is installed, `nbdev_docs` is
the real command. Quarto cannot be installed everywhere, so this script runs nbdev's part unchanged
(without nbdev's attempt to install Quarto) and renders each processed notebook in `_proc/` with
nbconvert, one page per notebook in the sidebar's order, `index.html` being `index.ipynb`.
Every script the pages load is served from `assets/` beside them: plotly.js from the installed
`plotly` wheel, require.js and the widget manager from the npm packages pinned in
`scripts/docs_assets/package.json`. No page refers to a CDN; `tests/test_docs.py` opens them in a
browser with the network off.

Usage: python scripts/docs_check.py [--out _docs_html] [--skip-proc]
"""
import argparse, json, os, re, shutil, subprocess, sys, tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ASSETS_PKG = ROOT / "scripts" / "docs_assets"
TEMPLATE_DIR = ROOT / "scripts" / "docs_template"
SITE_CSS = """
body.jp-Notebook { margin: 0; }
.vl-sidebar { position: fixed; top: 0; left: 0; bottom: 0; width: 15rem; overflow-y: auto; padding: 1rem;
  box-sizing: border-box; background: #f7f7f9; border-right: 1px solid #ddd; font: 14px/1.5 system-ui, sans-serif; }
.vl-sidebar ol { list-style: none; padding: 0; margin: 0.5rem 0 0; }
.vl-sidebar li a { display: block; padding: 0.2rem 0.4rem; color: #2c3e50; text-decoration: none; border-radius: 3px; }
.vl-sidebar li a:hover { background: #e8e8ee; }
.vl-sidebar a.vl-current { background: #2780e3; color: white; }
.vl-home { font-weight: 600; font-size: 1.2rem; color: #2780e3; text-decoration: none; }
main.vl-main { margin-left: 15rem; padding: 1rem 2rem 4rem; max-width: 1100px; }
.vl-title { margin-bottom: 0.2rem; }
.vl-description { font-style: italic; font-size: 125%; opacity: 0.75; margin-top: 0; }
.jp-OutputArea-output pre { max-height: 24rem; overflow: auto; }
.jp-RenderedHTMLCommon table { font-size: 13px; }
"""


def npm_assets() -> Path:
    "The pinned npm packages (require.js, the widget manager), installed once from the lock file."
    mods = ASSETS_PKG / "node_modules"
    stamp = mods / ".vlasteer-lock"
    lock = (ASSETS_PKG / "package-lock.json").read_text()
    if not (stamp.exists() and stamp.read_text() == lock):
        npm = shutil.which("npm")
        if npm is None: sys.exit("docs_check: npm not found; install Node.js/npm (scripts/install_sysdeps.sh does)")
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"],
                       cwd=ASSETS_PKG, check=True)
        stamp.write_text(lock)
    return mods


def proc(n_workers: int = 2):
    "nbdev_proc_nbs without its Quarto install step: the processed notebooks land in _proc/."
    os.chdir(ROOT)
    import nbdev.doclinks
    from nbdev.config import get_config
    from nbdev.quarto import refresh_quarto_yml, nbdev_sidebar
    from nbdev.serve import proc_nbs
    cfg = get_config()
    refresh_quarto_yml()
    nbdev.doclinks._build_modidx()
    nbdev_sidebar.__wrapped__(path=cfg.nbs_path)
    proc_nbs(cfg.nbs_path, n_workers=n_workers, force=True)


def page_order(proc_dir: Path) -> list:
    "Notebooks in the order of the sidebar nbdev generated (index first)."
    import yaml
    side = yaml.safe_load((proc_dir / "sidebar.yml").read_text())
    def walk(items):
        for it in items:
            if isinstance(it, str): yield it
            elif isinstance(it, dict):
                if "contents" in it: yield from walk(it["contents"])
                elif "href" in it: yield it["href"]
    names = [n for n in walk(side["website"]["sidebar"]["contents"]) if n.endswith(".ipynb")]
    return [proc_dir / n for n in names if (proc_dir / n).exists()]


def front_matter(nb) -> dict:
    "The YAML front matter nbdev puts in the first raw cell (title, description, output-file)."
    import yaml
    for c in nb.cells:
        if c.cell_type == "raw" and c.source.lstrip().startswith("---"):
            return yaml.safe_load(c.source.strip().strip("-")) or {}
    return {}


EXPLORER_REPR = re.compile(r"^([A-Z]\w*Explorer)\(")  # an explorer's text/plain repr, e.g. "ClusterExplorer(10 clusters, ...)"
PANDOC_ATTRS = re.compile(r"(\[[^\]]*\]\([^)]*\))\{[^}]*\}")
_opt_re = re.compile(r"^#\|\s*([\w-]+):\s*(.*?)\s*$")

def prepare(nb, widget_models: set) -> None:
    "Quarto's cell options as nbconvert tags, widget views without state dropped (figures' HTML: `plotly_docs_html`)."
    keep = []
    for c in nb.cells:
        if c.cell_type == "raw": continue
        if c.cell_type == "code":
            opts, lines = {}, []
            for l in c.source.splitlines():
                m = _opt_re.match(l)
                if m: opts[m[1]] = m[2].lower()
                elif not l.startswith("#|"): lines.append(l)
            c.source = "\n".join(lines).strip("\n")
            if opts.get("include") == "false": continue
            tags = c.metadata.setdefault("tags", [])
            if opts.get("echo") == "false" or not c.source: tags.append("remove_input")
            if opts.get("output") == "false": tags.append("remove_output")
            for o in c.get("outputs", []):
                d = o.get("data")
                if not d: continue
                if "text/markdown" in d:  # show_doc's Pandoc link attributes, e.g. [source](...){target="_blank"}
                    d["text/markdown"] = PANDOC_ATTRS.sub(r"\1", "".join(d["text/markdown"]))
                m = EXPLORER_REPR.match("".join(d.get("text/plain", "")))
                if m and "text/html" in d:  # an explorer's static figure: marked so the browser test finds it
                    d["text/html"] = f'<div class="vl-explorer-static" data-explorer="{m[1]}">{"".join(d["text/html"])}</div>'
                view = d.get("application/vnd.jupyter.widget-view+json")
                if view is not None and view.get("model_id") not in widget_models:
                    del d["application/vnd.jupyter.widget-view+json"]  # no state: show the static fallback
        keep.append(c)
    nb.cells = keep


def slug(text: str) -> str:
    "Quarto's heading ids (lower case, dashes), which nbdev's doc links point at."
    s = re.sub(r"[^\w\-. ]", "", text.strip().lower()).strip()
    return re.sub(r"\s+", "-", s)


def postprocess(html: str, doc_url: str) -> str:
    "Local scripts instead of CDN ones, relative doc links, Quarto-style heading ids."
    from bs4 import BeautifulSoup
    soup = BeautifulSoup(html, "html.parser")
    for s in soup.find_all("script"):
        src = s.get("src") or ""
        if re.search(r"cdn\.plot\.ly/plotly", src) or "mathjax" in src.lower(): s.decompose()
        elif s.get("type") == "module" and "cdn.plot.ly" in (s.string or ""): s.decompose()
    for a in soup.find_all("a", href=True):
        h = a["href"]
        if doc_url and h.startswith(doc_url):
            rest = h[len(doc_url):].lstrip("/")
            a["href"] = rest or "index.html"
    for h in soup.find_all(re.compile(r"^h[1-6]$")):
        for anchor in h.find_all("a", class_="anchor-link"): anchor.decompose()
        h["id"] = slug(h.get_text())
    return str(soup)


def render(out: Path) -> list:
    "One HTML page per processed notebook in _proc/, plus assets/; returns the pages written."
    import nbformat
    from nbconvert import HTMLExporter
    from traitlets.config import Config
    from nbdev.config import get_config
    cfg = get_config()
    proc_dir = ROOT / "_proc"
    nbs = page_order(proc_dir)
    if not nbs: sys.exit("docs_check: _proc/ has no processed notebooks; run without --skip-proc")
    mods = npm_assets()
    tmp = Path(tempfile.mkdtemp(prefix=".docs_html.", dir=out.parent)); tmp.chmod(0o755)
    assets = tmp / "assets"; assets.mkdir()
    import plotly
    shutil.copy(Path(plotly.__file__).parent / "package_data" / "plotly.min.js", assets / "plotly.min.js")
    shutil.copy(mods / "requirejs" / "require.js", assets / "require.js")
    shutil.copytree(mods / "@jupyter-widgets" / "html-manager" / "dist", assets / "html-manager")
    shutil.copy(ROOT / cfg.nbs_path / "styles.css", assets / "styles.css")
    (assets / "site.css").write_text(SITE_CSS)
    (assets / "favicon.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" fill="#2780e3"/></svg>')

    metas = []
    for p in nbs:
        nb = nbformat.read(p, as_version=4)
        fm = front_matter(nb)
        name = "index.html" if p.stem == "index" else fm.get("output-file") or p.with_suffix(".html").name
        metas.append(dict(path=p, nb=nb, fm=fm, href=name, title=fm.get("title") or p.stem))
    c = Config()
    c.TagRemovePreprocessor.enabled = True
    c.TagRemovePreprocessor.remove_input_tags = ("remove_input",)
    c.TagRemovePreprocessor.remove_all_outputs_tags = ("remove_output",)
    c.HTMLExporter.extra_template_basedirs = [str(TEMPLATE_DIR)]
    c.HTMLExporter.template_name = "vlasteer"
    c.HTMLExporter.require_js_url = "assets/require.js"
    c.HTMLExporter.widget_renderer_url = "assets/html-manager/embed-amd.js"
    c.HTMLExporter.exclude_anchor_links = True
    c.HTMLExporter.exclude_input_prompt = True
    c.HTMLExporter.exclude_output_prompt = True
    exp = HTMLExporter(config=c)
    doc_url = f"{cfg.doc_host.rstrip('/')}{cfg.doc_baseurl}".rstrip("/") + "/"
    site_title = cfg.title
    for m in metas:
        nb = m["nb"]
        state = (nb.metadata.get("widgets") or {}).get("application/vnd.jupyter.widget-state+json") or {}
        prepare(nb, set(state.get("state", {})))
        nb.metadata["title"] = f"{m['title']} – {site_title}"
        res = {"vl_site_title": site_title, "vl_title": m["title"], "vl_description": m["fm"].get("description"),
               "vl_pages": [dict(href=o["href"], title=o["title"], current=o is m) for o in metas]}
        html, _ = exp.from_notebook_node(nb, resources=res)
        (tmp / m["href"]).write_text(postprocess(html, doc_url))
    if out.exists(): shutil.rmtree(out)
    tmp.rename(out)
    return [out / m["href"] for m in metas]


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="_docs_html", help="folder for the rendered site (replaced)")
    ap.add_argument("--skip-proc", action="store_true", help="render the notebooks already in _proc/")
    ap.add_argument("--n-workers", type=int, default=2, help="processes for nbdev's notebook processing")
    a = ap.parse_args()
    if not a.skip_proc: proc(a.n_workers)
    pages = render((ROOT / a.out).resolve())
    print(f"docs_check: {len(pages)} pages in {Path(a.out) / 'index.html'}")
