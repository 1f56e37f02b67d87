"""The explorers in JupyterLab, driven in a real browser (what `make lab` gives a user).

For each notebook that displays an explorer (a cell showing a variable bound to `SomethingExplorer(...)`),
the cells up to that display (flagged cells skipped, as nbdev_test does) go into a scratch notebook;
a headless JupyterLab on 127.0.0.1 runs them through a real kernel, the test moves the explorer's first
control (picks another option in a dropdown, or steps a slider) and checks that the figure changed.
Screenshots land in test-artifacts/lab/.
"""
import json, os, re, secrets, subprocess, sys, time, urllib.request
from pathlib import Path
import nbformat, pytest
from browser import ARTIFACTS, chromium, free_port, missing, wait_for

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SHOTS = ARTIFACTS / "lab"
BIND = re.compile(r"^(\w+)\s*=\s*(\w+Explorer)\(", re.M)


def _directives(src: str) -> dict:
    return {m[1]: m[2] for m in re.finditer(r"^#\|\s*([\w-]+):?\s*(.*)$", src, re.M)}


def explorer_notebooks() -> list:
    "(notebook, explorer class, cells up to its display) for every notebook that displays an explorer."
    flags = set(re.search(r"^tst_flags\s*=\s*(.*)$", (ROOT / "settings.ini").read_text(), re.M)[1].split())
    found = []
    for p in sorted((ROOT / "nbs").glob("*.ipynb")):
        nb = nbformat.read(p, as_version=4)
        bound, cells = {}, []
        for c in nb.cells:
            if c.cell_type != "code": continue
            d = _directives(c.source)
            if flags & d.keys() or d.get("eval") == "false" or "nbdev_export(" in c.source: continue
            cells.append(c.source)
            bound.update({m[0]: m[1] for m in BIND.findall(c.source)})
            last = [l for l in c.source.splitlines() if l.strip() and not l.startswith("#")][-1:]
            if last and last[0].strip() in bound:
                found.append((p, bound[last[0].strip()], cells)); break
    return found


def test_extensions_enabled():
    r = subprocess.run([str(BIN / "jupyter"), "labextension", "list"], capture_output=True, text=True, timeout=120)
    out = re.sub(r"\x1b\[[0-9;]*m", "", r.stdout + r.stderr)
    for ext in ("jupyterlab-plotly", "@jupyter-widgets/jupyterlab-manager"):
        assert re.search(rf"{re.escape(ext)} v\S+ enabled OK", out), f"{ext} is not enabled:\n{out}"


def test_explorer_notebooks_found():
    names = {e for _, e, _ in explorer_notebooks()}
    assert "ClusterExplorer" in names, names


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1",
           "JUPYTER_CONFIG_DIR": str(root / ".jupyter"), "JUPYTER_RUNTIME_DIR": str(root / ".runtime")}
    args = [str(BIN / "jupyter"), "lab", "--no-browser", "--ip", "127.0.0.1", f"--port={port}",
            f"--ServerApp.token={token}", f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True",
            "--ServerApp.open_browser=False", "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if os.geteuid() == 0: args.append("--allow-root")
    settings = root / ".jupyter" / "lab" / "user-settings" / "@jupyterlab"
    for ext, file, value in (("notebook-extension", "tracker", {"windowingMode": "none"}),  # render every cell's output
                             ("apputils-extension", "notification", {"fetchNews": "false", "checkForUpdates": False})):
        (settings / ext).mkdir(parents=True, exist_ok=True)
        (settings / ext / f"{file}.jupyterlab-settings").write_text(json.dumps(value))
    env["JUPYTERLAB_SETTINGS_DIR"] = str(root / ".jupyter" / "lab" / "user-settings")
    log = open(root / "lab.log", "w")
    proc = subprocess.Popen(args, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2); break
        except Exception:
            if proc.poll() is not None: break
            time.sleep(0.5)
    else: pass
    assert proc.poll() is None, (root / "lab.log").read_text()[-3000:]
    yield dict(url=url, token=token, root=root)
    proc.terminate()
    try: proc.wait(20)
    except subprocess.TimeoutExpired: proc.kill()
    log.close()


SIGNATURE_FN = """(root => JSON.stringify([...root.querySelectorAll('.js-plotly-plot')].map(g => [
  (g.layout && g.layout.title && g.layout.title.text) || '',
  (g._fullData || []).map(t => [t.type, (t.x || []).length, JSON.stringify(t.y || t.z || t.cells || '').slice(0, 400)])])))"""
SIGNATURE = f"return {SIGNATURE_FN}(arguments[0]);"  # what the figures in a cell show, as one string
PANE_FN = """(root => { const p = root.querySelector('.vlasteer-pane');
  return p ? {title: (p.querySelector('h2') || {}).innerText || '', images: p.querySelectorAll('img[src^="data:image/png"]').length} : null; })"""
PANE = f"return {PANE_FN}(arguments[0]);"  # the card under an explorer's figure: its title and inline frames
WITH_CARDS = {"ClusterExplorer", "SteeringExplorer"}  # the notebooks display these with frames


@pytest.mark.skipif(missing() is not None, reason=str(missing()))
@pytest.mark.parametrize("case", explorer_notebooks(), ids=lambda c: c[1])
def test_explorer_interaction(lab, case):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select
    src, explorer, cells = case
    name = f"lab_{src.stem}.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, lab["root"] / name)
    SHOTS.mkdir(parents=True, exist_ok=True)
    shot = lambda tag: d.save_screenshot(str(SHOTS / f"{explorer}-{tag}.png"))
    with chromium(1400, 1000) as d:
        # a workspace of its own, so no notebook an earlier case opened is restored beside this one
        d.get(f"{lab['url']}/lab/workspaces/{src.stem}/tree/{name}?token={lab['token']}")
        nb_sel = ".jp-NotebookPanel:not(.lm-mod-hidden):not([aria-hidden=\"true\"]) .jp-Notebook"
        wait_for(d, f"window.jupyterapp && document.querySelector('{nb_sel} .jp-Cell') && document.querySelectorAll('.jp-NotebookPanel').length === 1",
                 90, "the notebook to open (alone)")
        wait_for(d, "[...document.querySelectorAll('.jp-Notebook-ExecutionIndicator')].some(e => e.dataset.status === 'idle')"
                    " || document.querySelector('.jp-Toolbar-kernelStatus, .jp-Notebook-ExecutionIndicator')", 90, "the kernel")
        time.sleep(2)
        d.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        last = f"{nb_sel} .jp-Cell:nth-child({len(cells)})"
        try:
            wait_for(d, f"document.querySelector('{last} .jp-OutputArea .widget-dropdown select, {last} .jp-OutputArea .widget-slider')",
                     150, f"{explorer}'s controls (the notebook cells to run)")
            wait_for(d, f"document.querySelector('{last} .jp-OutputArea .js-plotly-plot .main-svg')", 60, f"{explorer}'s figure")
        finally:
            d.execute_script(f"const o = document.querySelector('{last} .jp-Cell-outputArea'); if (o) o.scrollIntoView({{block: 'start'}})")
            shot("0-ran")
            (SHOTS / f"{explorer}-output.html").write_text(d.execute_script(
                f"const o = document.querySelector('{last} .jp-Cell-outputArea'); return o ? o.outerHTML : ''")[:200000])
            errs = d.execute_script("return [...document.querySelectorAll('.jp-OutputArea-output[data-mime-type=\"application/vnd.jupyter.stderr\"]')].map(e => e.innerText.slice(0, 400))")
        assert not any("Error" in e for e in errs), errs
        cell = d.find_element(By.CSS_SELECTOR, last)
        d.execute_script("arguments[0].scrollIntoView({block: 'start'})", cell)
        before = d.execute_script(SIGNATURE, cell)
        pane_before = d.execute_script(PANE, cell)
        if explorer in WITH_CARDS:  # the selected unit's card: frames inline, decoded by the browser
            assert pane_before and pane_before["images"] > 0, f"{explorer} shows no card with frames: {pane_before}"
            wait_for(d, f"[...document.querySelectorAll('{last} .vlasteer-pane img')].every(i => i.complete && i.naturalWidth > 0)",
                     30, f"{explorer}'s card frames to decode")
        sel = [e for e in cell.find_elements(By.CSS_SELECTOR, ".widget-dropdown select") if len(Select(e).options) > 1]  # a dropdown with a choice
        if sel:
            s = Select(sel[0]); cur = s.first_selected_option.get_attribute("value")
            other = next(o.get_attribute("value") for o in s.options if o.get_attribute("value") != cur)
            s.select_by_value(other)
        else:
            handle = cell.find_element(By.CSS_SELECTOR, ".widget-slider .noUi-handle")
            handle.click(); handle.send_keys(Keys.ARROW_RIGHT)
        wait_for(d, f"(() => {{ const c = document.querySelector('{last}'); const g = c.querySelector('.js-plotly-plot .main-svg');"
                    f" return g && {SIGNATURE_FN}(c) !== {json.dumps(before)}; }})()",
                 60, f"{explorer}'s figure to change after moving its first control that offers a choice")
        shot("1-changed")
        if pane_before:  # the card follows the selection (another unit's card, or none for a unit without one)
            was = json.dumps(json.dumps(pane_before, separators=(",", ":"), ensure_ascii=False))
            wait_for(d, f"(() => {{ const r = {PANE_FN}(document.querySelector('{last}')); return JSON.stringify(r) !== {was}; }})()",
                     30, f"{explorer}'s card to follow the new selection")
            d.execute_script("const p = arguments[0].querySelector('.vlasteer-pane'); if (p) p.scrollIntoView({block: 'start'})", cell)
            shot("2-card")
