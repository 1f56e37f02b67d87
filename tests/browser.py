"""Headless Debian chromium for the browser tests (selenium + chromium-driver; no browser download).

`chromium()` starts one with every host except localhost unresolvable, so a page that reaches for a
CDN logs an error instead of loading it. Screenshots go to test-artifacts/ (gitignored).
"""
import shutil, socket
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM, DRIVER = "/usr/bin/chromium", shutil.which("chromedriver") or "/usr/bin/chromedriver"


def missing() -> str | None:
    "Why the browser tests cannot run here (None when they can)."
    try: import selenium  # noqa: F401
    except ImportError: return "selenium is not installed: make install"
    for p in (CHROMIUM, DRIVER):
        if not Path(p).exists(): return f"{p} is missing: bash scripts/install_sysdeps.sh installs chromium and chromium-driver"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


@contextmanager
def chromium(width: int = 1280, height: int = 900):
    "A headless chromium that reaches only 127.0.0.1, with its console log kept."
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    o = webdriver.ChromeOptions()
    o.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--hide-scrollbars",
              f"--window-size={width},{height}", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
              "--no-first-run", "--disable-extensions", "--disable-background-networking", "--disable-sync",
              "--force-device-scale-factor=1"):
        o.add_argument(a)
    o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(options=o, service=Service(DRIVER))
    d.set_page_load_timeout(60)
    try: yield d
    finally: d.quit()


def severe(driver) -> list:
    "Console errors (and failed loads) since the last call."
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def wait_for(driver, js: str, timeout: float = 30, what: str = ""):
    "Poll `js` (an expression) until it is truthy; fail with `what`."
    from selenium.webdriver.support.ui import WebDriverWait
    try: return WebDriverWait(driver, timeout, poll_frequency=0.25).until(lambda d: d.execute_script("return " + js))
    except Exception as e: raise AssertionError(f"timed out after {timeout}s waiting for {what or js}") from e
