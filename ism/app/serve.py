"""How the app serves many visitors on a small machine: queue, concurrency, threads, per-request caps.

Every setting comes from an environment variable so a Space or a bigger machine can tune it without
code changes; the defaults are the ones measured best on a 2-core CPU (``benchmarks/load.py``).
"""
from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass, fields

ZERO_ALLOWED = ("playback",)      # every other setting must be positive


@dataclass
class ServeConfig:
    concurrency: int = 2          # ISM_CONCURRENCY: demo runs computed at once, each in its own worker process
                                  # (one per core; ism/app/runner.py)
    threads: int = 1              # ISM_THREADS: torch intra-op threads; concurrency x threads <= cores
    queue_size: int = 64          # ISM_QUEUE_SIZE: visitors waiting beyond this get "queue full"
    cache_size: int = 64          # ISM_CACHE_SIZE: finished demo runs kept for identical requests (a class
                                  # that clicks the same example gets the result at once)
    max_seconds: float = 60.0     # ISM_MAX_SECONDS: a run stops regenerating after this and reports so; a run
                                  # still computing (a long attack) 30 s later is stopped with a sentence
    curves_concurrency: int = 1   # ISM_CURVES_CONCURRENCY: live robustness-curve measurements at once
    delete_after: int = 600       # ISM_DELETE_AFTER: seconds before uploads and results are deleted (checked
                                  # as often): nothing a visitor sends is kept longer
    playback: float = 2.0         # ISM_PLAYBACK: the page plays a run's regeneration back over this many seconds
                                  # (in the browser, from the frames the final update carries) so a viewer can
                                  # watch it converge; 0 = no playback

    @classmethod
    def from_env(cls, env=None) -> "ServeConfig":
        env = os.environ if env is None else env
        out = {}
        for f in fields(cls):
            raw = env.get("ISM_" + f.name.upper())
            if raw is None or raw == "":
                continue
            try:
                value = type(f.default)(raw)
            except ValueError:
                raise ValueError(f"ISM_{f.name.upper()}={raw!r} is not a valid {type(f.default).__name__}") from None
            low_ok = value >= 0 if f.name in ZERO_ALLOWED else value > 0   # nan fails both and would refuse every run
            if not (math.isfinite(value) and low_ok):
                what = "a finite number >= 0" if f.name in ZERO_ALLOWED else "a positive finite number"
                raise ValueError(f"ISM_{f.name.upper()} must be {what}, got {raw!r}")
            out[f.name] = value
        return cls(**out)


class ActiveRuns:
    """Counts demo runs in progress (a run that is cancelled or whose visitor left is closed, and
    leaves the count), so tests and the load benchmark can see that nothing keeps running."""

    def __init__(self):
        self._n, self._lock = 0, threading.Lock()
        self.finished = 0   # runs that reached their final state
        self.stopped = 0    # runs closed before it (cancelled, visitor left, or an error)

    def __enter__(self):
        with self._lock:
            self._n += 1
        return self

    def __exit__(self, *exc):
        with self._lock:
            self._n -= 1
        return False

    def record(self, finished: bool) -> None:
        with self._lock:
            if finished:
                self.finished += 1
            else:
                self.stopped += 1

    @property
    def count(self) -> int:
        return self._n
