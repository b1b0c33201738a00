"""Latency of one demo run, measured through the app's API as a visitor would see it.

    python benchmarks/latency.py [--runs 20] [--attack PGD --eps 0.0314 --steps 10] [--out FILE]

Starts ``app.py`` in its own process on localhost (as a visitor's browser is another process; the
serving settings come from the ISM_* environment as in production), then for one CIFAR-10 example
image with PGD-10 and the default regeneration settings reports, p50/p95 over ``--runs`` runs:

- time to the first streamed frame;
- end-to-end latency with regeneration **played back** as the app does for viewers (at least
  ``ISM_PLAYBACK`` seconds spread over the frames shown: deliberate pacing, not computation);
- end-to-end latency with playback off (``ISM_PLAYBACK=0``): computing, rendering and streaming
  the run (the figure issue 14 targets), including the image's upload and the HTTP round trip;
- the computation alone (``run_demo`` in this process, the app's torch threads), for the breakdown.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from load import free_port, pct, start_app  # noqa: E402


def timed_run(client, args: tuple) -> tuple[float, float]:
    """One /defend request: (seconds to its first streamed update, seconds to its end)."""
    t0 = time.perf_counter()
    job = client.submit(*args, api_name="/defend")
    t_first = None
    while not job.done():
        if t_first is None and len(job.outputs()) > 0:
            t_first = time.perf_counter() - t0
        time.sleep(0.002)
    job.result()
    total = time.perf_counter() - t0
    return (t_first if t_first is not None else total), total


def with_seed(args: tuple, seed: int) -> tuple:
    """``args`` of /defend with another seed: a new run each time (the app computes an identical request
    once and answers repeats from its cache, which is not what a visitor's first run costs)."""
    return args[:7] + (seed,) + args[8:]


def measure(url: str, args: tuple, runs: int) -> tuple[list, list]:
    from gradio_client import Client

    client = Client(url, verbose=False, download_files=False)  # like a browser: files are fetched lazily
    client.predict(*args, api_name="/defend")  # warm-up
    first, total = [], []
    for i in range(runs):
        f, t = timed_run(client, with_seed(args, 1000 + i))
        first.append(f)
        total.append(t)
    return first, total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--attack", default="PGD")
    ap.add_argument("--eps", type=float, default=round(8 / 255, 4))
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threat", default="gray-box")
    ap.add_argument("--out", help="also write the figures to this JSON file")
    a = ap.parse_args()

    from dataclasses import replace

    import torch
    from gradio_client import handle_file

    from ism import load_defense
    from ism.app.demo import DemoRequest, run_demo
    from ism.app.serve import ServeConfig
    from ism.data.images import prepare_image

    serve = ServeConfig.from_env()
    d = load_defense(ROOT / "weights" / "cifar10")
    image = handle_file(str(ROOT / "examples/cifar10/cat_0.png"))
    args = (image, a.attack, a.eps, a.steps, a.threat, d.config.regen_restarts, d.config.regen_steps, 0, "cifar10")
    results = {}
    torch.set_num_threads(serve.threads)
    x = prepare_image(ROOT / "examples/cifar10/cat_0.png", d.image_size).tensor
    req = DemoRequest(attack=a.attack.lower(), eps=a.eps, steps=a.steps, threat=a.threat)
    list(run_demo(d, x, d.classes.index("cat"), req))
    alone = []
    for i in range(a.runs):
        t0 = time.perf_counter()
        list(run_demo(d, x, d.classes.index("cat"), replace(req, seed=1000 + i)))
        alone.append(time.perf_counter() - t0)
    for name, playback in (("played back", serve.playback), ("playback off", 0.0)):
        port = free_port()
        env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1",
               "ISM_PLAYBACK": str(playback)}
        proc = start_app(port, env)
        try:
            results[name] = measure(f"http://127.0.0.1:{port}/", args, a.runs)
            if playback == 0.0:
                from gradio_client import Client

                c = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=False)
                results["repeat"] = [timed_run(c, with_seed(args, 1000 + i))[1] for i in range(a.runs)]
        finally:
            proc.terminate()
            proc.wait(30)
    first, paced = results["played back"]
    first0, compute = results["playback off"]
    out = {"setting": f"{a.attack}-{a.steps} eps={a.eps} {a.threat}, regeneration {d.config.regen_restarts} "
                      f"restarts x {d.config.regen_steps} iterations, {a.runs} runs each, app in its own process, "
                      f"ISM_THREADS={serve.threads} ISM_CONCURRENCY={serve.concurrency}",
           "first_frame_s": {"p50": statistics.median(first0), "p95": pct(first0, 95)},
           f"end_to_end_s, played back (ISM_PLAYBACK={serve.playback:g})": {
               "p50": statistics.median(paced), "p95": pct(paced, 95)},
           "end_to_end_s, playback off (ISM_PLAYBACK=0)": {
               "p50": statistics.median(compute), "p95": pct(compute, 95)},
           "end_to_end_s, a request made before (from the cache), playback off": {
               "p50": statistics.median(results["repeat"]), "p95": pct(results["repeat"], 95)},
           "run_demo_alone_s (computation, in process)": {"p50": statistics.median(alone), "p95": pct(alone, 95)}}
    print(out["setting"])
    for k, v in out.items():
        if k != "setting":
            print(f"{k}: p50 {v['p50']:.3f} s, p95 {v['p95']:.3f} s")
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
