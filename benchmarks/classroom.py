"""A class at once: N students press Run in the same second, on a 2-core machine, through the public API.

    python benchmarks/classroom.py [--defense KEY | --all-defenses] [--students 30 --same 18] [--hundred]
                                   [--sweep] [--out benchmarks/results/classroom.json]

Starts ``app.py`` (README's command, default serving settings unless ``--concurrency/--threads``) in a
subprocess and measures, on the defense a visitor gets (``--defense``: the app's default, the first it serves;
``--all-defenses``: each shipped one in turn, the class figures only) and with the page's default settings for
it (PGD at its default epsilon, 10 steps, gray-box, its regeneration restarts x iterations, seed 0) unless said:
- **class**: ``--students`` gradio_client clients submit /defend at once, ``--same`` of them on the first
  CIFAR-10 example and the rest each on another example: p50 / p95 / max seconds to the final result,
  failed requests, and tracebacks in the server's log over the whole benchmark;
- **lesson**: the same students press the Lesson tab's step 1 at once: p50 / p95, failures;
- **slow neighbour**: one visitor runs Square at 50 steps; a second later another runs FGSM (8/255): the
  FGSM run's seconds to its final result;
- **again**: one visitor asks for a run, then for the same run three more times (the run cache answers):
  seconds to the final result of each repeat;
- **different runs**: ``--students`` runs with no two alike (a seed each) at once: runs a minute;
- for each class: the CPU seconds the server process, its run workers and the clients (this process) used;
- with ``--hundred``: the class again with 100 students, 60 on the first example;
- **stop then run**: a visitor starts that Square run, presses Stop (/stop, as the page's button does) two
  seconds later, then Run (FGSM): seconds from Stop to the new run's first result and to its final one;
- with ``--sweep``: runs a minute for ``--students`` different runs (no two alike, nothing shared or
  cached) at each ISM_CONCURRENCY x ISM_THREADS in ``--grid`` (one app start each).
Writes the numbers as JSON to ``--out`` (and prints them).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from load import free_port, pct, start_app  # noqa: E402

from ism.app.defenses import defense_keys  # noqa: E402
from ism.app.render import output  # noqa: E402


def defaults(key: str) -> tuple:
    """The page's default settings on defense ``key``: PGD at its default epsilon, 10 steps, gray-box, the
    defense's regeneration restarts x iterations."""
    from ism.app.defenses import DEFAULT_EPS

    regen = json.loads((ROOT / "weights" / key / "defense.json").read_text())
    return ("PGD", round(DEFAULT_EPS.get(key.split("-")[0], 8 / 255), 4), 10, "gray-box",
            regen.get("regen_restarts", 4), regen.get("regen_steps", 30))


def examples(key: str) -> list[Path]:
    return sorted((ROOT / "examples" / key.split("-")[0]).glob("*.png"))


KEY = defense_keys(ROOT / "weights")[0]       # the app's default defense (set by --defense)
DEFAULT = defaults(KEY)
EXAMPLES = examples(KEY)


def use(key: str) -> None:
    """Measure defense ``key`` from here on: its examples and the page's defaults for it."""
    global KEY, DEFAULT, EXAMPLES
    KEY, DEFAULT, EXAMPLES = key, defaults(key), examples(key)


def client(url: str):
    from gradio_client import Client

    return Client(url, verbose=False, download_files=False, httpx_kwargs={"timeout": 300})


def run_once(url: str, image: Path, settings=DEFAULT, seed: int = 0, barrier: threading.Barrier | None = None):
    """(seconds to the final result, error or None) for one /defend request from a fresh client."""
    from gradio_client import handle_file

    c = client(url)
    if barrier is not None:
        barrier.wait()
    t0 = time.perf_counter()
    try:
        res = c.predict(handle_file(str(image)), *settings, seed, KEY, api_name="/defend")
        ok = "final answer" in output(res, "verdict")
        return time.perf_counter() - t0, None if ok else f"no final answer: {output(res, 'verdict')[:80]}"
    except Exception as e:   # counted, never raised
        return time.perf_counter() - t0, f"{type(e).__name__}: {e}"


SERVER: list = []     # the app's process (with_app), whose CPU seconds the_class reports


def cpu_seconds() -> dict:
    """CPU seconds so far (user + system, /proc) of the app's server process, of its run workers (its child
    processes) and of this benchmark's own clients."""
    tick = os.sysconf("SC_CLK_TCK")

    def stat(pid) -> list:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()

    def used(f) -> float:
        return (int(f[11]) + int(f[12])) / tick

    out = {"clients": time.process_time()}
    if SERVER and Path("/proc").is_dir():
        out["server"] = used(stat(SERVER[0]))
        workers = 0.0
        for p in Path("/proc").glob("[0-9]*"):
            try:
                f = stat(p.name)
            except OSError:
                continue
            workers += used(f) if int(f[1]) == SERVER[0] else 0.0
        out["workers"] = workers
    return out


def the_class(url: str, students: int, same: int, seed: int = 0, settings=DEFAULT, distinct: bool = False) -> dict:
    """``same`` students on the first example, the rest one example each; ``distinct``: every student
    a seed of its own too (no two runs alike: nothing shared or cached). With the CPU seconds each side used
    (``cpu_seconds``), connecting included."""
    images = [EXAMPLES[0]] * same + [EXAMPLES[1 + i % (len(EXAMPLES) - 1)] for i in range(students - same)]
    seeds = [seed + i if distinct else seed for i in range(students)]
    barrier = threading.Barrier(students)
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    with ThreadPoolExecutor(students) as pool:
        res = list(pool.map(lambda i: run_once(url, images[i], settings, seeds[i], barrier), range(students)))
    wall, cpu1 = time.perf_counter() - t0, cpu_seconds()
    lat = [s for s, _ in res]
    errors = [e for _, e in res if e]
    return {"students": students, "same_example": same, "distinct_runs": len(set(zip(images, seeds))),
            "p50_s": round(statistics.median(lat), 2), "p95_s": round(pct(lat, 95), 2), "max_s": round(max(lat), 2),
            "failed": len(errors), "failures": errors[:5], "runs_per_min": round(students / wall * 60, 1),
            "wall_s": round(wall, 2), "cpu_s": {k: round(cpu1[k] - cpu0[k], 1) for k in cpu1}}


def lesson(url: str, students: int) -> dict:
    """``students`` press the Lesson tab's first step at the same second."""
    barrier = threading.Barrier(students)

    def one(_):
        c = client(url)
        barrier.wait()
        t0 = time.perf_counter()
        try:
            c.predict(KEY, api_name="/lesson_1")
            return time.perf_counter() - t0, None
        except Exception as e:
            return time.perf_counter() - t0, f"{type(e).__name__}: {e}"

    with ThreadPoolExecutor(students) as pool:
        res = list(pool.map(one, range(students)))
    lat = [s for s, _ in res]
    return {"students": students, "p50_s": round(statistics.median(lat), 2), "p95_s": round(pct(lat, 95), 2),
            "failed": sum(1 for _, e in res if e)}


def slow_neighbour(url: str) -> dict:
    from gradio_client import handle_file

    slow = client(url).submit(handle_file(str(EXAMPLES[2])), "Square (black-box)", round(8 / 255, 4), 50, "gray-box",
                              *DEFAULT[4:], 7, KEY, api_name="/defend")
    time.sleep(1.0)
    seconds, err = run_once(url, EXAMPLES[3], ("FGSM", round(8 / 255, 4), 1, "gray-box", *DEFAULT[4:]), seed=7)
    t = time.perf_counter()
    try:
        slow.result()
        slow_err = None
    except Exception as e:
        slow_err = f"{type(e).__name__}: {e}"
    return {"fgsm_beside_square50_s": round(seconds, 2), "error": err, "square_after_fgsm_s": round(
        time.perf_counter() - t, 2), "square_error": slow_err}


def stop_then_run(url: str) -> dict:
    from gradio_client import handle_file

    c = client(url)
    job = c.submit(handle_file(str(EXAMPLES[4])), "Square (black-box)", round(8 / 255, 4), 50, "gray-box",
                   *DEFAULT[4:], 11, KEY, api_name="/defend")
    time.sleep(2.0)
    t0 = time.perf_counter()
    said = c.predict(KEY, api_name="/stop")
    stopped = time.perf_counter() - t0
    nxt = c.submit(handle_file(str(EXAMPLES[5])), "FGSM", round(8 / 255, 4), 1, "gray-box", *DEFAULT[4:], 11, KEY,
                   api_name="/defend")
    first = None
    while not nxt.done():
        if first is None and nxt.outputs():
            first = time.perf_counter() - t0
        time.sleep(0.01)
    final = time.perf_counter() - t0
    first = first if first is not None else final
    job.cancel()
    return {"stop_answer": said, "stop_call_s": round(stopped, 2), "stop_to_next_first_result_s": round(first, 2),
            "stop_to_next_final_s": round(final, 2), "next_ok": "final answer" in output(nxt.result(), "verdict")}


def again(url: str, repeats: int = 3, seed: int = 3) -> dict:
    """One visitor asks for a run, then for the same run ``repeats`` more times: the run cache's answer."""
    first, err = run_once(url, EXAMPLES[6], DEFAULT, seed=seed)
    times = [run_once(url, EXAMPLES[6], DEFAULT, seed=seed) for _ in range(repeats)]
    return {"first_s": round(first, 2), "again_s": [round(t, 2) for t, _ in times],
            "failed": sum(1 for _, e in [(first, err), *times] if e)}


def with_app(env_extra: dict, fn, root: Path = ROOT):
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1",
           "GRADIO_ANALYTICS_ENABLED": "False", **{k: str(v) for k, v in env_extra.items()}}
    proc = start_app(port, env, root)
    SERVER[:] = [proc.pid]
    url = f"http://127.0.0.1:{port}/"
    try:
        run_once(url, EXAMPLES[-1], ("FGSM", 0.05, 1, "gray-box", 1, 2), seed=999)   # warm-up (workers up)
        out = fn(url)
    finally:
        SERVER.clear()
        proc.terminate()
        try:
            log = proc.communicate(timeout=30)[0]
        except Exception:
            proc.kill()
            log = proc.communicate()[0]
    return out, log


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--defense", default=KEY, choices=defense_keys(ROOT / "weights"),
                    help=f"the served defense the students use (default: the app's default, {KEY})")
    ap.add_argument("--all-defenses", action="store_true", help="the class, again and different-runs figures on "
                                                                 "every shipped defense (one app start)")
    ap.add_argument("--hundred", action="store_true", help="also a class of 100, 60 on the first example")
    ap.add_argument("--students", type=int, default=30)
    ap.add_argument("--same", type=int, default=18, help="students on the first example (the rest: one each)")
    ap.add_argument("--concurrency", type=int, default=None, help="ISM_CONCURRENCY (default: the app's)")
    ap.add_argument("--threads", type=int, default=None, help="ISM_THREADS (default: the app's)")
    ap.add_argument("--sweep", action="store_true", help="runs a minute against ISM_CONCURRENCY x ISM_THREADS")
    ap.add_argument("--grid", default="1x1,1x2,2x1,3x1,4x1", help="CONCURRENCYxTHREADS pairs for --sweep")
    ap.add_argument("--root", default=str(ROOT), help="the checkout whose app.py is measured (another version's, "
                                                       "to compare; its /stop may not exist)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    env = {k: v for k, v in (("ISM_CONCURRENCY", a.concurrency), ("ISM_THREADS", a.threads)) if v is not None}
    use(a.defense)

    def scenarios(url):
        out = {"defense": KEY, "settings": list(DEFAULT), "class": the_class(url, a.students, a.same)}
        if a.hundred:
            out["class_of_100"] = the_class(url, 100, 60)
        out.update(again=again(url), different_runs=the_class(url, a.students, 1, seed=1, distinct=True),
                   lesson_step_1=lesson(url, a.students), slow_neighbour=slow_neighbour(url))
        try:
            out["stop_then_run"] = stop_then_run(url)
        except Exception as e:   # an app without /stop (an earlier version)
            out["stop_then_run"] = f"{type(e).__name__}: {e}"
        if a.all_defenses:
            out["every_defense"] = {}
            for key in defense_keys(ROOT / "weights"):
                use(key)
                out["every_defense"][key] = {   # (seeds of their own: nothing from the runs above is cached)
                    "settings": list(DEFAULT), "class": the_class(url, a.students, a.same, seed=500),
                    "again": again(url, seed=501),
                    "different_runs": the_class(url, a.students, 1, seed=600, distinct=True)}
            use(a.defense)
        return out

    report, log = with_app(env, scenarios, Path(a.root))
    report["server_tracebacks"] = log.count("Traceback (most recent call last)")
    report["server_log_errors"] = [line for line in log.splitlines() if "ERROR" in line][:5]
    if a.sweep:
        report["sweep"] = []
        for pair in a.grid.split(","):
            conc, threads = (int(v) for v in pair.split("x"))
            res, log = with_app({"ISM_CONCURRENCY": conc, "ISM_THREADS": threads},
                                lambda url: the_class(url, a.students, 1, seed=1, distinct=True), Path(a.root))
            report["sweep"].append({"concurrency": conc, "threads": threads, "runs_per_min": res["runs_per_min"],
                                    "p95_s": res["p95_s"], "failed": res["failed"],
                                    "tracebacks": log.count("Traceback (most recent call last)")})
    report.update(root=str(Path(a.root).resolve()), command="python benchmarks/classroom.py " + " ".join(sys.argv[1:]), cpu_cores=os.cpu_count(),
                  date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    print(json.dumps(report, indent=1))
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
