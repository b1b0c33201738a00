"""Load test: many visitors at once, through the app's public API, as on a busy Space.

    python benchmarks/load.py [--defense KEY] [--clients 20 --requests 5] [--concurrency 2 --threads 1]

Starts ``app.py`` in a subprocess on localhost (with ISM_CONCURRENCY / ISM_THREADS set from the
options), then runs ``--clients`` independent ``gradio_client`` clients at once, each sending
``--requests`` demo runs with mixed attacks, epsilons and threat models (some adaptive), each on
its own example image of the served defense ``--defense`` (default: the app's default). Checks that every request succeeds and that each client gets back its own
results (its image's true label and the epsilon it asked for), and reports latency p50/p95/max,
throughput and the server's peak resident memory. Writes the numbers to ``--out`` as JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from ism.app.render import output  # noqa: E402  (the /defend outputs by name)

# (attack, eps, steps, threat): the mix every client cycles through, offset by its index
MIX = [("PGD", 8 / 255, 10, "gray-box"), ("FGSM", 0.1, 1, "gray-box"), ("PGD", 0.3, 10, "gray-box"),
       ("PGD", 8 / 255, 10, "adaptive white-box"), ("BIM", 16 / 255, 5, "gray-box"),
       ("MI-FGSM", 0.2, 5, "gray-box"), ("FGSM", 4 / 255, 1, "adaptive white-box")]


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (the app's run workers and multiprocessing's resource tracker)."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def pss_mib(pid: int) -> float:
    """Proportional memory (shared pages split between the processes sharing them) of ``pid`` and every
    process below it: what the machine holds for the app."""
    total = 0.0
    for p in descendants(pid):
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            pass
    return total


def start_app(port: int, env: dict, root: Path = ROOT) -> subprocess.Popen:
    """``root``/app.py in its own process (another checkout's, to compare two versions)."""
    proc = subprocess.Popen([sys.executable, str(Path(root) / "app.py")], cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit("the app exited during start-up:\n" + proc.stdout.read())
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("the app did not start within 300 s")


def one_client(url: str, index: int, requests: int, examples: list[Path], restarts: int, iterations: int,
               defense: str):
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False, download_files=False)
    image = examples[index % len(examples)]
    truth = image.stem.rsplit("_", 1)[0]
    out = []
    for r in range(requests):
        attack, eps, steps, threat = MIX[(index + r) % len(MIX)]
        t0 = time.perf_counter()
        try:
            res = client.predict(handle_file(str(image)), attack, round(eps, 4), steps, threat, restarts, iterations,
                                 index * 100 + r, defense, api_name="/defend")
            pert, verdict = output(res, "perturbation_text"), output(res, "verdict")
            linf = float(re.search(r"L∞ = ([0-9.]+)", pert).group(1))
            own = f"true label, {truth}" in verdict and abs(linf - round(eps, 4)) <= 1.5 / 255
            err = None if own else f"got someone else's result? label/eps mismatch: {verdict[:80]} / {pert[:40]}"
        except Exception as e:  # a failed request is counted, never raised
            err = f"{type(e).__name__}: {e}"
        out.append({"client": index, "request": r, "attack": attack, "eps": eps, "threat": threat,
                    "seconds": time.perf_counter() - t0, "error": err})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    from ism.app.defenses import defense_keys

    keys = defense_keys(ROOT / "weights")
    ap.add_argument("--defense", default=keys[0], choices=keys,
                    help=f"the served defense the clients use (default: the app's default, {keys[0]})")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--requests", type=int, default=5)
    ap.add_argument("--concurrency", type=int, default=None, help="ISM_CONCURRENCY (default: the app's)")
    ap.add_argument("--threads", type=int, default=None, help="ISM_THREADS (default: the app's)")
    ap.add_argument("--restarts", type=int, default=4)
    ap.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--out", default=None, help="JSON file for the numbers (default: print only)")
    a = ap.parse_args()

    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1",
           "GRADIO_ANALYTICS_ENABLED": "False"}
    for name, value in (("ISM_CONCURRENCY", a.concurrency), ("ISM_THREADS", a.threads)):
        if value is not None:
            env[name] = str(value)
    examples = sorted((ROOT / "examples" / a.defense.split("-")[0]).glob("*.png"))
    proc = start_app(port, env)
    peak, stop = [0], threading.Event()

    def watch():
        while not stop.is_set() and proc.poll() is None:
            peak[0] = max(peak[0], rss_kib(proc.pid, "VmRSS"))
            time.sleep(0.2)

    try:
        url = f"http://127.0.0.1:{port}/"
        one_client(url, 0, 1, examples, a.restarts, a.iterations, a.defense)  # warm-up
        rss_start = rss_kib(proc.pid, "VmRSS")
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        t0 = time.perf_counter()
        with ThreadPoolExecutor(a.clients) as pool:
            results = [r for rs in pool.map(lambda i: one_client(url, i, a.requests, examples, a.restarts, a.iterations, a.defense),
                                            range(a.clients)) for r in rs]
        wall = time.perf_counter() - t0
        stop.set()
        watcher.join()
        hwm = rss_kib(proc.pid, "VmHWM")
    finally:
        proc.terminate()
        try:
            log = proc.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            log = proc.communicate()[0]
    lat = [r["seconds"] for r in results]
    failed = [r for r in results if r["error"]]
    settings = re.search(r"ServeConfig\(.*?\)", log)
    report = {
        "command": "python benchmarks/load.py " + " ".join(sys.argv[1:]),
        "server": settings.group(0) if settings else None,
        "clients": a.clients, "requests_per_client": a.requests, "requests": len(results),
        "failed": len(failed), "failures": [f["error"] for f in failed][:10],
        "latency_p50_s": round(statistics.median(lat), 2), "latency_p95_s": round(pct(lat, 95), 2),
        "latency_max_s": round(max(lat), 2), "wall_s": round(wall, 1),
        "throughput_per_min": round(len(results) / wall * 60, 1),
        "rss_after_warmup_mib": round(rss_start / 1024), "rss_peak_during_load_mib": round(peak[0] / 1024),
        "rss_high_water_mark_mib": round(hwm / 1024),
        "regeneration": f"{a.restarts} restarts x {a.iterations} iterations", "cpu_cores": os.cpu_count(),
    }
    print(json.dumps(report, indent=1))
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(report, indent=1) + "\n")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
