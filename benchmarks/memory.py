"""Does the server leak? Its resident memory over many page loads and demo runs.

    python benchmarks/memory.py [--pages 300 --runs 60]

Starts ``app.py`` in a subprocess (as benchmarks/load.py does), then loads the page ``--pages``
times (the HTML and the app config a browser fetches; the Curves tab's figures, built by the page's
load event in a browser, are not exercised here: tests/test_browser.py loads real pages) and sends ``--runs``
demo runs through the public API, sampling after each block of 50 page loads / 10 runs the server's RSS and
the proportional memory (PSS) of the server with its run workers (the processes that compute the runs).
Figures are ``matplotlib.figure.Figure`` objects (no pyplot state), so memory should level off after warm-up.
Writes the samples to ``--out`` as JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import ROOT, free_port, pss_mib, rss_kib, start_app  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pages", type=int, default=300)
    p.add_argument("--runs", type=int, default=60)
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/memory.json"))
    a = p.parse_args()
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1"}
    proc = start_app(port, env)
    url = f"http://127.0.0.1:{port}/"

    def sample(after: str, pages: int, runs: int) -> dict:
        return {"after": after, "pages": pages, "runs": runs, "rss_mib": rss_kib(proc.pid, "VmRSS") / 1024,
                "pss_mib_with_workers": pss_mib(proc.pid)}

    samples = [sample("start", 0, 0)]
    try:
        from gradio_client import Client, handle_file

        for i in range(1, a.pages + 1):
            for path in ("", "config"):
                urllib.request.urlopen(url + path, timeout=60).read()
            if i % 50 == 0:
                samples.append(sample("pages", i, 0))
                print(samples[-1], flush=True)
        client = Client(url, verbose=False)
        examples = sorted((ROOT / "examples/cifar10").glob("*.png"))
        t0 = time.time()
        for i in range(1, a.runs + 1):
            client.predict(handle_file(str(examples[i % len(examples)])), "PGD", 8 / 255, 10, "gray-box", 2, 10, i,
                           "cifar10", api_name="/defend")   # the hardened defense, as measured before
            if i % 10 == 0:
                samples.append(sample("runs", a.pages, i))
                print(samples[-1], flush=True)
        res = {"command": "python benchmarks/memory.py " + " ".join(sys.argv[1:]), "samples": samples,
               "peak_rss_mib": rss_kib(proc.pid, "VmHWM") / 1024, "run_seconds": round(time.time() - t0, 1),
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    Path(a.out).write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
