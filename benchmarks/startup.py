"""What a Space pays at start: seconds from `python app.py` to the page answering, and memory then and after
a first run of each kind (demo, compare): the server's resident memory, and the proportional memory (PSS,
shared pages split between the processes sharing them) of the server with its run workers, which is what
the machine must hold.

    python benchmarks/startup.py [--repeats 3]      # -> benchmarks/results/startup.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from load import descendants, free_port, pss_mib, rss_kib  # noqa: E402


def rss_mib(pid: int) -> float:
    return rss_kib(pid, "VmRSS") / 1024


def one_start(first_runs: bool) -> dict:
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1",
           "GRADIO_ANALYTICS_ENABLED": "False"}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    try:
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError("app.py exited during start-up")
                time.sleep(0.1)
        out = {"seconds_to_page": time.perf_counter() - t0, "rss_mib_at_start": rss_mib(proc.pid),
               "processes_at_start": len(descendants(proc.pid)), "pss_mib_all_at_start": pss_mib(proc.pid)}
        if first_runs:
            from gradio_client import Client, handle_file

            c = Client(url, verbose=False)
            cat = handle_file(str(ROOT / "examples/cifar10/cat_0.png"))
            t = time.perf_counter()
            c.predict(cat, "PGD", 8 / 255, 10, "gray-box", 4, 30, 0, "cifar10", api_name="/defend")
            out["first_defend_seconds"] = time.perf_counter() - t
            out["rss_mib_after_defend"] = rss_mib(proc.pid)
            out["processes_after_defend"] = len(descendants(proc.pid))
            out["pss_mib_all_after_defend"] = pss_mib(proc.pid)
            t = time.perf_counter()
            c.predict(cat, "PGD", 8 / 255, 10, 0, "cifar10", api_name="/compare")
            out["first_compare_seconds"] = time.perf_counter() - t
            out["rss_mib_after_compare"] = rss_mib(proc.pid)
            out["pss_mib_all_after_compare"] = pss_mib(proc.pid)
        return out
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/startup.json"))
    a = p.parse_args(argv)
    starts = [one_start(first_runs=(i == 0)) for i in range(a.repeats)]
    result = {"command": "python benchmarks/startup.py " + " ".join(argv or sys.argv[1:]),
              "cores": os.cpu_count(), "starts": starts,
              "seconds_to_page_median": statistics.median(s["seconds_to_page"] for s in starts),
              "rss_mib_at_start_median": statistics.median(s["rss_mib_at_start"] for s in starts),
              "pss_mib_all_at_start_median": statistics.median(s["pss_mib_all_at_start"] for s in starts),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
