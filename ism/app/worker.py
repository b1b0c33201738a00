"""One worker process of the RunPool (ism/app/runner.py): what it is sent (``Work``: one request, whole), how two
requests are known to be the same run (``run_key``), and the loop that computes runs one at a time and sends
each shown state's new part back. Every module of its defenses checks a cancel flag and the run's ceiling
before each forward pass, so a stopped run ends within one pass."""
from __future__ import annotations

import contextlib
import hashlib
import math
import os
import sys
import threading
import time
import traceback
import types
from dataclasses import asdict, replace
from enum import Enum
from typing import NamedTuple

import torch
import torch.multiprocessing as mp

from ism.app.demo import DemoState, Stage, run_demo
from ism.app.request import RunRequest


class Stopped(Exception):
    """The run was cancelled: nobody follows it any more."""


class OverCap(Exception):
    """The run computed longer than its ceiling."""


def defense_digest(defense) -> str:
    """sha256 over the defense's parameters and buffers (names, shapes, values) and its config."""
    h = hashlib.sha256(repr(asdict(defense.config)).encode())
    for name, t in defense.state_dict().items():
        h.update(name.encode() + str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class Work(NamedTuple):
    """What a worker computes: one request, whole, on its prepared picture."""
    request: RunRequest              # its ``defense`` names the served defense
    x: torch.Tensor                  # the picture as the models see it
    label: int | None                # its true class (an example), else None
    every: int                       # every k-th regeneration iteration is sent (``shown``)
    max_seconds: float | None = None   # regeneration stops after this long (the server's per-run cap)


def run_key(digest: str, work: Work) -> str:
    """What makes two requests the same run: image pixels, defense weights, settings, seed."""
    what = (digest, work.label, work.every, work.max_seconds, sorted(work.request.computed().items()))
    h = hashlib.sha256(repr(what).encode())
    h.update(work.x.detach().cpu().float().contiguous().numpy().tobytes())
    return h.hexdigest()


def _portable(stage: Stage) -> Stage:
    """A regeneration frame another process can receive: its reading if computed, else none (the app
    reads only the frames it plays back, and those are resolved before sending)."""
    return replace(stage, probs={}) if callable(stage.probs) else stage


def shown(state: DemoState, every: int) -> bool:
    """Whether a streamed state is shown: all but the regeneration iterations between played-back frames."""
    n = len(state.regeneration)
    return not (n > 0 and state.final is None and (n - 1) % every and not state.regen_stop)


class Status(str, Enum):
    """Where a job is; the last four are its end (and the worker's message kinds)."""
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    STOPPED = "stopped"
    CAP = "cap"          # computed longer than its ceiling
    FAILED = "failed"


FINISHED = (Status.DONE, Status.STOPPED, Status.CAP, Status.FAILED)

def _worker(defenses: dict, jobs, results, cancel, threads: int, files: str | None = None) -> None:
    """One worker process: compute runs from ``jobs`` one at a time, send each shown state's new part, its
    pictures encoded as PNG files in the folder ``files`` (the server's gradio cache; None: the server encodes)."""
    torch.set_num_threads(threads)
    if files is not None:
        from ism.app.render import encode
    current = {"id": -1, "deadline": math.inf}
    parent = mp.parent_process()

    def watch_parent():                  # the app was killed (SIGTERM, SIGKILL): do not outlive it
        while parent is None or parent.is_alive():
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch_parent, daemon=True).start()

    def check(*_):
        if cancel.value == current["id"]:
            raise Stopped()
        if time.monotonic() > current["deadline"]:
            raise OverCap()

    for d in defenses.values():
        for m in (d.classifier, d.ism, d.detector, d.generator):
            m.register_forward_pre_hook(check)
    while True:
        job = jobs.get()
        if job is None:
            return
        job_id, work, cap = job
        current.update(id=job_id, deadline=time.monotonic() + cap)
        sent = 0
        try:
            for state in run_demo(defenses[work.request.defense], work.x, work.label, work.request, work.max_seconds):
                if not shown(state, work.every):
                    continue
                if state.regeneration:
                    state.regeneration[-1].top3       # the played-back frame's reading, computed here
                if files is not None:
                    encode(state, state.regeneration[sent:], files)
                new = [_portable(f) for f in state.regeneration[sent:]]
                sent = len(state.regeneration)
                # the final state carries every frame's reading (run_demo has read them all by then, for the
                # frames gallery's captions), where the frames sent before went without
                readings = [f.probs for f in state.regeneration] if state.done else None
                snapshot = replace(state, regeneration=[], warnings=list(state.warnings),    # (the run's own
                                   regen_errors=list(state.regen_errors))                 # state goes on changing)
                results.send((job_id, "state", snapshot, new, readings))
            results.send((job_id, "done", ""))
        except Stopped:
            results.send((job_id, "stopped", ""))
        except OverCap:
            results.send((job_id, "cap", f"This run reached the server's limit of {cap:g} s of computing per run "
                                        "(so that every visitor gets a turn) and was stopped. Try fewer attack steps "
                                        "or regeneration iterations."))
        except Exception as e:   # a bug: logged in full by the parent, one sentence for the visitor
            results.send((job_id, "failed", f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))
        finally:
            current.update(id=-1, deadline=math.inf)


_main_lock = threading.Lock()


@contextlib.contextmanager
def _light_main():
    """While a worker is spawned, ``__main__`` is an empty module: "spawn" imports the parent's main script again
    in the child, and app.py's is gradio, the tabs and their figures (about 2 s of CPU and some hundred MB per
    worker, on the cores the starting server needs); ``_worker`` needs only this module."""
    with _main_lock:
        main = sys.modules["__main__"]
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            yield
        finally:
            sys.modules["__main__"] = main


