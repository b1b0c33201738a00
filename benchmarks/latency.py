"""Latency of one demo run, measured through the app's API as a visitor would see it.

    python benchmarks/latency.py [--runs 20] [--attack PGD --eps 0.0314 --steps 10]

Launches the app on localhost (serving settings from the ISM_* environment, as app.py), then
for one CIFAR-10 example image with PGD-10 and the default
regeneration settings reports time to the first streamed frame and end-to-end latency (p50/p95).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--attack", default="PGD")
    ap.add_argument("--eps", type=float, default=round(8 / 255, 4))
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threat", default="gray-box")
    ap.add_argument("--weights", default=str(ROOT / "weights" / "cifar10"))
    a = ap.parse_args()

    import torch
    from gradio_client import Client, handle_file

    import app
    from ism import load_defense
    from ism.app.serve import ServeConfig

    serve = ServeConfig.from_env()   # the app's serving settings (ISM_THREADS, ISM_CONCURRENCY, ...)
    torch.set_num_threads(serve.threads)
    d = load_defense(a.weights)
    demo = app.build_demo(d, serve=serve)
    demo.queue(default_concurrency_limit=serve.concurrency, max_size=serve.queue_size)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    client = Client(url, verbose=False, download_files=False)  # like a browser: files are fetched lazily
    image = handle_file(str(ROOT / "examples/cifar10/cat_0.png"))
    args = (image, a.attack, a.eps, a.steps, a.threat, d.config.regen_restarts, d.config.regen_steps, 0)
    client.predict(*args, api_name="/defend")  # warm-up
    first, total = [], []
    for _ in range(a.runs):
        t0 = time.perf_counter()
        job = client.submit(*args, api_name="/defend")
        t_first = None
        while not job.done():
            if t_first is None and len(job.outputs()) > 0:
                t_first = time.perf_counter() - t0
            time.sleep(0.002)
        job.result()
        total.append(time.perf_counter() - t0)
        first.append(t_first if t_first is not None else total[-1])
    demo.close()
    print(f"{a.attack}-{a.steps} eps={a.eps} {a.threat}, regeneration {d.config.regen_restarts} restarts x "
          f"{d.config.regen_steps} iterations, {a.runs} runs, torch threads {torch.get_num_threads()}")
    print(f"time to first streamed frame: p50 {statistics.median(first):.3f} s, p95 {pct(first, 95):.3f} s")
    print(f"end-to-end latency:           p50 {statistics.median(total):.3f} s, p95 {pct(total, 95):.3f} s")


if __name__ == "__main__":
    main()
