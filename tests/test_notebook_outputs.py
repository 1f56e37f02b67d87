"""Committed notebook outputs stay small and clean (STYLE.md): what the docs site shows, nothing more.

No copy of plotly.js in an output (figures load it from the page or the CDN), no widget state, no
absolute paths of the machine that ran them, no tqdm progress bars, no random (uuid4) plotly div or widget
model ids (so a refill gives the same bytes), and a byte budget per notebook.
`scripts/fill_outputs.py` runs notebooks in place with these rules; this test holds every notebook to them.
"""
import json, re
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
NBS = sorted(p for p in (ROOT / "nbs").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
BUDGET = 600_000           # bytes of outputs per notebook (figures are downsampled to a few thousand points)
ONE_OUTPUT = 250_000       # bytes in any single output
ABS_PATH = re.compile(r"(?<![\w.])(/work/|/tmp/|/home/|/root/|/Users/|/var/folders/|[A-Z]:\\\\Users)")
TQDM_BAR = re.compile(r"\d+%\|[^|\n]*\|")
UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def outputs(nb: dict):
    for i, c in enumerate(nb["cells"]):
        for o in c.get("outputs", []):
            yield i, o


def texts(o: dict):
    "Every string an output carries, per mime type ('stream' for stdout/stderr)."
    if o.get("output_type") == "stream": yield "stream", "".join(o.get("text", ""))
    if o.get("output_type") == "error": yield "error", "\n".join(o.get("traceback", []))
    for mime, v in (o.get("data") or {}).items():
        yield mime, v if isinstance(v, str) else "".join(v) if isinstance(v, list) and all(isinstance(x, str) for x in v) else json.dumps(v)


def problems(path: Path) -> list:
    "What breaks the output rules in one notebook (empty when it is clean)."
    nb = json.loads(path.read_text())
    found, total = [], 0
    if "widgets" in nb.get("metadata", {}): found.append("widget state in the notebook metadata")
    for i, o in outputs(nb):
        size = len(json.dumps(o))
        total += size
        if size > ONE_OUTPUT: found.append(f"cell {i}: one output of {size:,} bytes (> {ONE_OUTPUT:,}): downsample the figure")
        if o.get("output_type") == "error": found.append(f"cell {i}: an error output")
        if {"application/vnd.plotly.v1+json", "text/html"} <= set(o.get("data") or {}):
            found.append(f"cell {i}: a figure stored twice (plotly JSON and HTML); keep the JSON (scripts/fill_outputs.py)")
        if '"source"' in json.dumps((o.get("data") or {}).get("application/vnd.plotly.v1+json", {})):
            found.append(f"cell {i}: a plotly JSON with a 'source' key (images), which nbdev's notebook writer splits; "
                         "store that figure as HTML (scripts/fill_outputs.py does)")
        for mime, t in texts(o):
            if mime == "application/vnd.jupyter.widget-state+json": found.append(f"cell {i}: widget state in an output")
            if "* plotly.js v" in t or "Copyright 2012-20" in t and "Plotly, Inc" in t:
                found.append(f"cell {i}: plotly.js embedded in a {mime} output; use a renderer that loads it (scripts/fill_outputs.py does)")
            m = ABS_PATH.search(t)
            if m: found.append(f"cell {i}: absolute path {t[m.start():m.start() + 40]!r} in a {mime} output")
            if mime == "text/html" and UUID4.search(t):
                found.append(f"cell {i}: a random id in an HTML output; fill with scripts/fill_outputs.py (it makes ids stable)")
            if mime == WIDGET_VIEW and re.fullmatch(r"[0-9a-f]{12}4[0-9a-f]{19}", o["data"][mime].get("model_id", "")):
                found.append(f"cell {i}: a random widget model id; fill with scripts/fill_outputs.py (it makes ids stable)")
            if mime == "stream" and ("\r" in t or TQDM_BAR.search(t)):
                found.append(f"cell {i}: a progress bar in the output; silence tqdm (TQDM_DISABLE=1 or disable=True)")
    if total > BUDGET: found.append(f"outputs total {total:,} bytes (> budget {BUDGET:,})")
    return found


@pytest.mark.parametrize("path", NBS, ids=[p.name for p in NBS])
def test_outputs_small_and_clean(path):
    assert problems(path) == [], f"{path.name}: " + "; ".join(problems(path))


def test_rules_catch_bad_outputs(tmp_path):
    "The checks above can fail: a notebook breaking each rule is flagged for each."
    bad = {"cells": [{"cell_type": "code", "source": "", "metadata": {}, "outputs": [
        {"output_type": "stream", "name": "stderr", "text": "  5%|#         | 1/20\r 10%|##        | 2/20\r"},
        {"output_type": "display_data", "metadata": {}, "data": {"text/html": "<script>/**\n* plotly.js v4.1.1\n* Copyright 2012-2026, Plotly, Inc.</script>"}},
        {"output_type": "execute_result", "metadata": {}, "data": {"text/plain": "PosixPath('/work/main/runs/x')"}},
        {"output_type": "display_data", "metadata": {}, "data": {"text/plain": "x" * (ONE_OUTPUT + 1)}},
        {"output_type": "display_data", "metadata": {}, "data": {"text/html": '<div id="3d6fb069-7a1f-4060-825b-81ee571ec1d0"></div>'}},
        {"output_type": "display_data", "metadata": {}, "data": {WIDGET_VIEW: {"model_id": "5e541e9dd3904e86a733abb161f3cff9"}}},
        {"output_type": "display_data", "metadata": {}, "data": {"application/vnd.plotly.v1+json": {"data": []}, "text/html": "<div></div>"}},
        {"output_type": "display_data", "metadata": {}, "data": {"application/vnd.plotly.v1+json": {"data": [{"type": "image", "source": ["data:"]}]}}}]}],
        "metadata": {"widgets": {"application/vnd.jupyter.widget-state+json": {"state": {}}}}, "nbformat": 4, "nbformat_minor": 5}
    p = tmp_path / "bad.ipynb"; p.write_text(json.dumps(bad))
    got = " | ".join(problems(p))
    for what in ("widget state", "progress bar", "plotly.js embedded", "absolute path", "one output of", "random id in an HTML",
                 "random widget model id", "stored twice", "'source' key"):
        assert what in got, (what, got)
    ok = {**bad, "metadata": {}, "cells": [{"cell_type": "code", "source": "", "metadata": {}, "outputs": [
        {"output_type": "stream", "name": "stdout", "text": "done: 20 episodes in runs/demo\n"}]}]}
    p.write_text(json.dumps(ok))
    assert problems(p) == []
