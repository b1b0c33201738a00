"""A real browser (Debian's headless Chromium, driven by Playwright) runs an example end to end."""
import os
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        raise RuntimeError("CI must install Debian's chromium for the browser test (see .ci/run)")
    pytest.skip("Debian chromium not installed (apt-get install chromium)", allow_module_level=True)
playwright = pytest.importorskip("playwright.sync_api")


def test_run_an_example_in_the_browser(app_url, tmp_path):
    shots = Path(os.environ.get("ISM_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(app_url)
        page.get_by_text("Examples (click one)").wait_for(timeout=60_000)
        page.locator(".thumbnail-item").nth(6).click()          # the 7th example (a cat)
        page.get_by_text("ready", exact=True).wait_for(timeout=30_000)   # the preview says the input is set
        page.get_by_role("button", name="Run", exact=True).click()
        page.get_by_text("final answer").wait_for(timeout=120_000)
        page.locator("#regen-live img").first.wait_for(timeout=30_000)
        assert page.locator("#regen-live img").count() >= 1
        page.screenshot(path=str(shots / "app-run.png"), full_page=True)
        verdict = page.locator("#verdict").inner_text()
        browser.close()
    assert "caught the attack" in verdict or "missed the attack" in verdict
    assert (shots / "app-run.png").stat().st_size > 10_000
