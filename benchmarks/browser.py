"""One visitor in a real browser: click Run, see the final answer, on the app's default defense.

    python benchmarks/browser.py [--runs 6] [--out benchmarks/results/browser.json]

Starts ``app.py`` (README's command, default serving settings) and drives Debian's headless Chromium with
Playwright at 1366x768: for each of ``--runs`` gallery examples (different pictures, so no run comes from the
run cache), pick it, press Run, and time from the click to the headline's final answer ("… → answered …")
(the page then plays the regeneration back in panel 6 over ISM_PLAYBACK seconds). p50 / max, as JSON. (A run
the cache answers can skip the running note, so it is measured through the API: classroom.py's "again".)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from load import free_port, start_app  # noqa: E402

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VERDICT = "#verdict [data-testid=markdown]"   # the headline's own text (gradio's timer is drawn over it apart)
HAS_FINAL = "(sel) => (document.querySelector(sel)?.innerText || '').includes(' → answered ')"


def click_to_final(page) -> float:
    """Seconds from the click on Run to the new run's final answer: the headline first gives way to the running
    note (the run has started), then says "… → answered …" again."""
    t0 = time.perf_counter()
    page.locator("#run").click()
    page.wait_for_function(f"(sel) => !({HAS_FINAL})(sel)", arg=VERDICT, timeout=120_000, polling=10)
    page.wait_for_function(HAS_FINAL, arg=VERDICT, timeout=120_000, polling=10)
    return time.perf_counter() - t0


def pick(page, i: int, dataset: str = "cifar10-paper") -> None:
    """Click the i-th example and wait until the page says it is picked, by name."""
    stem = sorted((ROOT / "examples" / dataset.split("-")[0]).glob("*.png"))[i].stem
    page.locator("#examples .thumbnail-item").nth(i).click()
    page.get_by_text(f"Picked: {stem}").wait_for(timeout=30_000)


def main() -> None:
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=6)
    ap.add_argument("--root", default=str(ROOT), help="the checkout whose app.py is measured (another version's, "
                                                       "to compare)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1",
           "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = start_app(port, env, Path(a.root))
    finals = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium", args=ARGS)
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            page.goto(f"http://127.0.0.1:{port}/")
            page.get_by_text("Examples (click one)").wait_for(timeout=120_000)
            for i in range(a.runs + 1):                   # the first: a warm-up (workers starting)
                pick(page, i)
                seconds = click_to_final(page)
                if i:
                    finals.append(seconds)
                page.wait_for_timeout(2500)                # the playback ends before the next click
            browser.close()
    finally:
        proc.terminate()
        log = proc.communicate(timeout=30)[0]
    report = {"click_to_final_s": [round(s, 2) for s in finals], "p50_s": round(statistics.median(finals), 2),
              "max_s": round(max(finals), 2),
              "server_tracebacks": log.count("Traceback (most recent call last)"), "root": str(Path(a.root).resolve()),
              "command": "python benchmarks/browser.py " + " ".join(sys.argv[1:]), "cpu_cores": os.cpu_count(),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    print(json.dumps(report, indent=1))
    if a.out:
        Path(a.out).write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
