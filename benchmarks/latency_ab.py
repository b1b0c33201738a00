"""Two versions of the app, the same request, interleaved: which one answers a visitor sooner?

    python benchmarks/latency_ab.py OTHER_CHECKOUT [--defense KEY] [--runs 30]

Starts this checkout's ``app.py`` and OTHER_CHECKOUT's (e.g. ``git worktree add /tmp/before HEAD~1``)
side by side, each in its own process with playback off (``ISM_PLAYBACK=0``), and sends them the
default run of ``benchmarks/latency.py`` (the first example of ``--defense``, default the app's default;
PGD-10 at 8/255, 4 restarts x 30 iterations) in turns, one request at a time. This machine's speed drifts by tens of percent within
an hour (a shared 2-core CPU): a comparison made in turns is fair where two runs of latency.py made
minutes apart are not.
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
sys.path.insert(0, str(ROOT / "benchmarks"))

from latency import timed_run, with_seed  # noqa: E402
from load import free_port, pct, start_app  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("other", help="the other checkout (its weights/ and examples/ are used too)")
    from ism.app.defenses import defense_keys

    keys = defense_keys(ROOT / "weights")
    ap.add_argument("--defense", default=keys[0], choices=keys, help=f"default: the app's default, {keys[0]}")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--out", help="also write the figures to this JSON file")
    a = ap.parse_args()
    from gradio_client import Client, handle_file

    roots = {"this checkout": ROOT, "other": Path(a.other).resolve()}
    image = handle_file(str(sorted((ROOT / "examples" / a.defense.split("-")[0]).glob("*.png"))[0]))
    args = (image, "PGD", round(8 / 255, 4), 10, "gray-box", 4, 30, 0, a.defense)
    procs, urls = [], {}
    try:
        for name, root in roots.items():
            port = free_port()
            env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1", "ISM_PLAYBACK": "0"}
            procs.append(start_app(port, env, root))
            urls[name] = f"http://127.0.0.1:{port}/"
        clients = {name: Client(url, verbose=False, download_files=False) for name, url in urls.items()}
        for c in clients.values():
            c.predict(*args, api_name="/defend")                  # warm-up
        totals = {name: [] for name in roots}
        for i in range(a.runs):
            for name, c in clients.items():                      # a new seed each turn: no answer from a cache
                totals[name].append(timed_run(c, with_seed(args, 1000 + i))[1])
    finally:
        for p in procs:
            p.terminate()
            p.wait(30)
    out = {"setting": f"{a.defense}: PGD-10 8/255 gray-box, 4 x 30 regeneration, ISM_PLAYBACK=0, {a.runs} runs each, in turns",
           **{f"{name} ({roots[name]})": {"p50": statistics.median(t), "p95": pct(t, 95), "mean": statistics.mean(t)}
              for name, t in totals.items()}}
    print(json.dumps(out, indent=1))
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"{time.perf_counter() - t0:.0f} s", file=sys.stderr)
