"""Run notebooks in place so their committed outputs (what the docs site shows) are fresh, small and clean.

Cells run as `nbdev_test` runs them (execnb's shell in the notebook's folder, cells flagged with a
`tst_flags` flag skipped), with plotly figures stored once, as their JSON (JupyterLab draws it; the docs step adds
the HTML: `vlasteer.report.plotly_docs_html`), tqdm silenced, and no widget state kept; `nbdev_clean` runs afterwards.
The random ids plotly gives its divs and ipywidgets their models are replaced by ids derived from the
notebook's name and the cell's position, so filling a notebook twice gives the same bytes.
tests/test_notebook_outputs.py holds the result to the output rules.

Usage: python scripts/fill_outputs.py nbs/05_clusters.ipynb [...]   (no argument: every notebook)
       python scripts/fill_outputs.py --ids-only [...]   (only tidy the committed outputs: stable ids, figures once)
"""
import os, re, sys, uuid
os.environ.setdefault("PLOTLY_RENDERER", "plotly_mimetype")
os.environ["TQDM_DISABLE"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "1")
import subprocess
from pathlib import Path

from vlasteer.report import PLOTLY_MIME, plotly_json_html

ROOT = Path(__file__).resolve().parent.parent


UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _has_source(o) -> bool:
    if isinstance(o, dict): return "source" in o or any(_has_source(v) for v in o.values())
    return isinstance(o, list) and any(_has_source(v) for v in o)


def figure_once(data: dict) -> None:
    """Keep one copy of a plotly figure: its JSON, or its HTML when the JSON holds a `source` key (images): nbdev's and
    execnb's notebook writers split every `source` string into lines, which breaks both the figure and their reader."""
    if PLOTLY_MIME not in data: return
    if _has_source(data[PLOTLY_MIME]): data["text/html"] = plotly_json_html(data.pop(PLOTLY_MIME))
    else: data.pop("text/html", None)


def stable_ids(cells, name: str) -> None:
    "Store each figure once (`figure_once`), then replace the random ids in outputs (plotly divs, widget models)."
    for i, c in enumerate(cells):
        for j, o in enumerate(c.get("outputs") or []):
            data = o.get("data") or {}
            figure_once(data)
            seen = {}
            def fixed(m):
                if m.group(0) not in seen: seen[m.group(0)] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"vlasteer:{name}:{i}:{j}:{len(seen)}"))
                return seen[m.group(0)]
            html = data.get("text/html")
            if html is not None:
                text = "".join(html) if isinstance(html, list) else html
                new = UUID.sub(fixed, text)
                data["text/html"] = new.splitlines(keepends=True) if isinstance(html, list) else new
            if WIDGET_VIEW in data and "model_id" in data[WIDGET_VIEW]:
                data[WIDGET_VIEW]["model_id"] = uuid.uuid5(uuid.NAMESPACE_URL, f"vlasteer:{name}:{i}:{j}:model").hex


def fill(path: Path) -> None:
    "Execute `path` and write it back with its outputs (stops at the first failing cell)."
    from execnb.shell import CaptureShell
    from execnb.nbio import read_nb, write_nb
    from fastcore.xtras import working_directory
    from nbdev.config import get_config
    from nbdev.process import NBProcessor
    flags = set(get_config().tst_flags.split())
    def skip(cell):
        if cell.cell_type != "code" or "nbdev_export(" in cell.source: return True
        d = getattr(cell, "directives_", {}) or {}
        return d.get("eval:", [""])[0].lower() == "false" or bool(flags & d.keys())
    nb = NBProcessor(path, procs=[], process=True).nb  # parses the `#|` directives like nbdev_test
    shell = CaptureShell(path)
    with working_directory(path.parent):
        shell.run_all(nb, exc_stop=True, preproc=skip)
    nb.metadata.pop("widgets", None)
    raw = read_nb(path)
    for c, r in zip(nb.cells, raw.cells):  # keep the source exactly; take only the outputs
        if r.cell_type == "code": r.outputs = c.get("outputs", [])
    stable_ids(raw.cells, path.name)
    raw.metadata.pop("widgets", None)
    write_nb(raw, path)


if __name__ == "__main__":
    args = sys.argv[1:]
    ids_only = "--ids-only" in args
    paths = [Path(p).resolve() for p in args if p != "--ids-only"] or sorted((ROOT / "nbs").glob("*.ipynb"))
    for p in paths:
        if not p.exists(): sys.exit(f"fill_outputs: no notebook {p}")
    if ids_only:
        import json
        for p in paths:
            nb = json.loads(p.read_text())
            stable_ids(nb["cells"], p.name)
            p.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
        sys.exit(0)
    for p in paths:
        print(f"fill_outputs: {p.relative_to(ROOT)}", flush=True)
        fill(p)
    bin_ = Path(sys.executable).parent
    for p in paths: subprocess.run([str(bin_ / "nbdev_clean"), "--fname", str(p)], check=True, cwd=ROOT)
