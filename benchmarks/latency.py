"""Latency of one demo run, measured through the app's API as a visitor would see it.

    python benchmarks/latency.py [--defense KEY] [--runs 20] [--attack PGD --eps 0.0314 --steps 10] [--out FILE]

Starts ``app.py`` in its own process on localhost (as a visitor's browser is another process; the
serving settings come from the ISM_* environment as in production), then for the first example of the
served defense ``--defense`` (default: the app's default) with PGD-10 at the page's default epsilon and the
defense's regeneration settings reports, p50/p95 over ``--runs`` runs (a new seed each):

- time to the first streamed update;
- end to end: computing, rendering and streaming the run, including the image's upload and the HTTP
  round trip (the page then plays regeneration back itself, ``ISM_PLAYBACK`` seconds);
- the same request again (answered from the run cache);
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
    from ism.app.defenses import DEFAULT_EPS, defense_keys

    keys = defense_keys(ROOT / "weights")
    ap = argparse.ArgumentParser()
    ap.add_argument("--defense", default=keys[0], choices=keys,
                    help=f"the served defense (default: the app's default, {keys[0]})")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--attack", default="PGD")
    ap.add_argument("--eps", type=float, default=None, help="default: the page's for the defense's data set")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threat", default="gray-box")
    ap.add_argument("--out", help="also write the figures to this JSON file")
    a = ap.parse_args()

    from dataclasses import replace

    import torch
    from gradio_client import Client, handle_file

    from ism import load_defense
    from ism.app.demo import run_demo
    from ism.app.request import RunRequest
    from ism.app.serve import ServeConfig
    from ism.data.images import prepare_image

    serve = ServeConfig.from_env()
    d = load_defense(ROOT / "weights" / a.defense)
    dataset = d.config.dataset
    eps = a.eps if a.eps is not None else round(DEFAULT_EPS.get(dataset, 8 / 255), 4)
    path = sorted((ROOT / "examples" / dataset).glob("*.png"))[0]
    label = d.classes.index(path.stem.rsplit("_", 1)[0])
    image = handle_file(str(path))
    args = (image, a.attack, eps, a.steps, a.threat, d.config.regen_restarts, d.config.regen_steps, 0, a.defense)
    torch.set_num_threads(serve.threads)
    x = prepare_image(path, d.image_size).tensor
    req = RunRequest(attack=a.attack, eps=eps, steps=a.steps, threat=a.threat)
    list(run_demo(d, x, label, req))
    alone = []
    for i in range(a.runs):
        t0 = time.perf_counter()
        list(run_demo(d, x, label, replace(req, seed=1000 + i)))
        alone.append(time.perf_counter() - t0)
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1"}
    proc = start_app(port, env)
    try:
        url = f"http://127.0.0.1:{port}/"
        first, total = measure(url, args, a.runs)
        c = Client(url, verbose=False, download_files=False)
        repeat = [timed_run(c, with_seed(args, 1000 + i))[1] for i in range(a.runs)]
    finally:
        proc.terminate()
        proc.wait(30)
    out = {"setting": f"{a.defense}: {a.attack}-{a.steps} eps={eps} {a.threat}, regeneration {d.config.regen_restarts} "
                      f"restarts x {d.config.regen_steps} iterations, {a.runs} runs each, app in its own process, "
                      f"ISM_THREADS={serve.threads} ISM_CONCURRENCY={serve.concurrency} (the page then plays the "
                      f"regeneration back over ISM_PLAYBACK={serve.playback:g} s itself)",
           "first_update_s": {"p50": statistics.median(first), "p95": pct(first, 95)},
           "end_to_end_s": {"p50": statistics.median(total), "p95": pct(total, 95)},
           "end_to_end_s, a request made before (from the cache)": {
               "p50": statistics.median(repeat), "p95": pct(repeat, 95)},
           "run_demo_alone_s (computation, in process)": {"p50": statistics.median(alone), "p95": pct(alone, 95)},
           "command": "python benchmarks/latency.py " + " ".join(sys.argv[1:]),
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    print(out["setting"])
    for k, v in out.items():
        if isinstance(v, dict):
            print(f"{k}: p50 {v['p50']:.3f} s, p95 {v['p95']:.3f} s")
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
