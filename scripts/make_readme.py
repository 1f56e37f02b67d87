"""Write README.md from nbs/index.ipynb (markdown as is, code fenced, text outputs indented).

nbdev_readme needs Quarto, which these machines cannot install; this renders the same content.
Usage: python scripts/make_readme.py [--check]   (--check exits 1 when README.md is stale)
"""
import sys
from pathlib import Path
import nbformat

def render(nb_path: Path) -> str:
    nb = nbformat.read(nb_path, as_version=4)
    out = []
    for c in nb.cells:
        src = c.source.strip()
        if not src or src.startswith("#| hide"): continue
        if c.cell_type == "markdown":
            out.append(src)
        else:
            lines = [l for l in src.splitlines() if not l.startswith("#|")]
            out.append("```python\n" + "\n".join(lines) + "\n```")
            text = "".join(o.get("text", "") for o in c.get("outputs", []) if o.get("output_type") == "stream")
            if text.strip(): out.append("\n".join("    " + l for l in text.rstrip().splitlines()))
    return "\n\n".join(out) + "\n"

if __name__ == "__main__":
    root = Path(__file__).resolve().parent.parent
    text = render(root / "nbs" / "index.ipynb")
    readme = root / "README.md"
    if "--check" in sys.argv:
        if readme.read_text() != text: print("README.md is stale: run python scripts/make_readme.py"); sys.exit(1)
    else:
        readme.write_text(text)
