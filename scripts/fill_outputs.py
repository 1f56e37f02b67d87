"""Run notebooks in place so their committed outputs (what the docs site shows) are fresh, small and clean.

Cells run as `nbdev_test` runs them (execnb's shell in the notebook's folder, cells flagged with a
`tst_flags` flag skipped), with plotly figures stored as their JSON plus a div that loads plotly.js
(never the library itself), tqdm silenced, and no widget state kept; `nbdev_clean` runs afterwards.
tests/test_notebook_outputs.py holds the result to the output rules.

Usage: python scripts/fill_outputs.py nbs/05_clusters.ipynb [...]   (no argument: every notebook)
"""
import os, sys
os.environ.setdefault("PLOTLY_RENDERER", "plotly_mimetype+notebook_connected")
os.environ["TQDM_DISABLE"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "1")
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


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
    raw.metadata.pop("widgets", None)
    write_nb(raw, path)


if __name__ == "__main__":
    paths = [Path(p).resolve() for p in sys.argv[1:]] or sorted((ROOT / "nbs").glob("*.ipynb"))
    for p in paths:
        if not p.exists(): sys.exit(f"fill_outputs: no notebook {p}")
    for p in paths:
        print(f"fill_outputs: {p.relative_to(ROOT)}", flush=True)
        fill(p)
    bin_ = Path(sys.executable).parent
    for p in paths: subprocess.run([str(bin_ / "nbdev_clean"), "--fname", str(p)], check=True, cwd=ROOT)
