"""Demo runs for a whole class at once: worker processes, shared identical runs, a bounded cache, Stop.

- **Worker processes, one per core** (``ServeConfig.concurrency``). A process computes one run at a
  time, so a run's seeded randomness (torchattacks draws its random starts from the global torch RNG)
  belongs to that run alone without any process-wide lock, and no visitor's attack waits for another's.
- **Identical requests are computed once.** A run is deterministic, so its key is the image's pixels,
  the data set, the defense's weights (sha256 of its parameters), the settings and the seed: a request
  whose run is in progress follows it, one whose run has finished replays it from a bounded cache.
- **Stop stops.** A run that no visitor follows any more (Stop, a closed tab, a cancelled API call) is
  cancelled: every module of the worker's defense checks a flag before each forward pass, so the
  computation ends within one pass and the worker takes the next run at once.
- **A ceiling on every run.** A run that computes longer than ``max_seconds`` ends with a sentence.
- Visitors waiting for a free worker see their place in line and an expected wait (``RunPool.place``).

``RunPool.follow`` returns a ``Follower``: iterate it for ``DemoState`` snapshots (or ``Waiting``
notes while the run is queued); ``close()`` it to leave.
"""
from __future__ import annotations

import atexit
import contextlib
import logging
import math
import os
import signal
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field, replace
from multiprocessing import connection as mp_connection
from pathlib import Path

import torch.multiprocessing as mp

from ism.app.worker import FINISHED, OverCap, Status, Stopped, Work, _light_main, _worker, defense_digest, run_key

log = logging.getLogger("ism-defense")
# Set when the interpreter starts to exit. Registered after multiprocessing's own exit hook, so it runs first
# (atexit is last in, first out): the workers that hook then terminates are not replaced by new ones, which
# could not start any more ("a run worker exited (code -15); starting another" and a traceback at exit).
_exiting = threading.Event()
atexit.register(_exiting.set)
WAIT_GAP = 2.0      # a waiting visitor's place in line is told at most this often
TICK = 1.0          # a follower with nothing new hears from its run at least this often (a ``None``)
HUNG_AFTER = 60.0   # a worker still on one run this long after the run's ceiling is replaced


SHARED = ("original", "perturbation", "adversarial", "purified", "counter")   # stages that never change once a run has them


class Full(Exception):
    """Too many runs are waiting already."""


@dataclass
class Waiting:
    """A note for a follower whose run waits for a free worker."""
    place: int          # 1 = next to start
    seconds: float      # expected wait before it starts


@dataclass
class Job:
    key: str
    work: Work
    id: int = 0
    states: list = field(default_factory=list)          # DemoState snapshots, in order
    status: Status = Status.QUEUED
    message: str = ""
    followers: int = 0
    cancelled: bool = False                             # nobody follows it any more: a new request starts anew
    started: float = 0.0                                # given to a worker
    computing: float = 0.0                              # its first state arrived
    frames: list = field(default_factory=list)          # the regeneration frames received so far

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


@dataclass
class Worker:
    """One worker process, its job queue and cancel flag, and the job it computes (None: idle)."""
    proc: object
    jobs: object
    cancel: object
    results: object                  # the receiving end of its pipe
    job: Job | None = None


class RunPool:
    """Computes demo runs in ``workers`` processes; see the module's docstring."""

    def __init__(self, defenses: dict, workers: int = 2, threads: int = 1, cache_size: int = 64,
                 max_seconds: float = 60.0, queue_size: int = 64, files: str | None = None,
                 keep_files: float = 600.0):
        """``files``: a folder the workers encode each run's pictures into (inside the page's gradio cache folder,
        so that gradio serves them as they are; ism/app/render.py: ``encode``); None: the server encodes them
        when it renders a state. The pool deletes a file there ``keep_files`` seconds after it was last written
        or handed out (gradio deletes only the files it handed out: a stopped run's pictures, an uploaded face
        among them, would stay), and the whole folder when it closes."""
        self.defenses, self.max_seconds, self.cache_size = defenses, float(max_seconds), cache_size
        self.files, self.keep_files, self._swept = files, float(keep_files), time.monotonic()
        self._procs: list = []                             # every worker process started (a Ctrl+C at start-up)
        self.queue_size, self.threads = queue_size, threads
        self.digests = {name: defense_digest(d) for name, d in defenses.items()}
        self._lock = threading.Condition()
        self._pending: deque[Job] = deque()
        self._running: dict[str, Job] = {}                 # key -> job queued or in progress
        self._cache: OrderedDict[str, Job] = OrderedDict()  # key -> finished job, most recent last
        self._ids = 0
        self.computed = 0                                  # runs started on a worker
        self._durations = deque([2.0], maxlen=20)          # recent run times, for the expected wait
        self._closed = False
        self._workers: list[Worker] = []
        try:
            for _ in range(max(1, int(workers))):
                self._workers.append(self._start_worker())
        except BaseException:          # (Ctrl+C while the app starts: the workers started so far are stopped; they
            for proc in self._procs:   # have no runs yet, and one may be started but not recorded as a worker)
                if proc.pid is not None:
                    proc.kill()
            for w in self._workers:
                w.jobs.close()
                w.results.close()
            raise
        self._reader = threading.Thread(target=self._read, daemon=True, name="runpool-reader")
        self._reader.start()

    # --- visitors ------------------------------------------------------------------------
    def follow(self, work: Work) -> "Follower":
        key = run_key(self.digests[work.request.defense], work)
        with self._lock:
            job = self._cache.get(key) or self._running.get(key)
            if job is not None and job.cancelled:
                job = None
            if job is not None:
                if key in self._cache:
                    self._cache.move_to_end(key)
            else:
                if len(self._pending) >= self.queue_size:
                    raise Full(f"The server is full: {len(self._pending)} runs are waiting for a worker. "
                               "Please try again in a minute.")
                self._ids += 1
                job = Job(key, work, id=self._ids)
                self._running[key] = job
                self._pending.append(job)
                self._dispatch()
            job.followers += 1
        return Follower(self, job)

    def leave(self, job: Job) -> None:
        """A follower leaves; a run nobody follows any more is cancelled (queued: dropped)."""
        with self._lock:
            job.followers -= 1
            if job.followers > 0 or job.finished:
                return
            job.cancelled = True
            if job.status == Status.QUEUED:
                self._pending.remove(job)
                self._finish(job, Status.STOPPED, "")
            else:
                for w in self._workers:
                    if w.job is job:
                        w.cancel.value = job.id

    def place(self, job: Job) -> Waiting | None:
        """Place in line and expected wait of a queued job (None once it runs)."""
        with self._lock:
            if job.status != Status.QUEUED:
                return None
            place = self._pending.index(job) + 1
            per = sum(self._durations) / len(self._durations)
            rounds = math.ceil(place / len(self._workers))
            return Waiting(place, rounds * per)

    @property
    def busy(self) -> int:
        with self._lock:
            return sum(w.job is not None for w in self._workers)

    def close(self) -> None:
        """Stop the workers (each finishes its run's current pass) and close their queues; twice is once."""
        if self._closed:
            return
        self._closed = True
        for w in self._workers:
            w.jobs.put(None)
        for w in self._workers:
            w.proc.join(timeout=5)
            if w.proc.is_alive():
                w.proc.kill()
            w.jobs.close()
        self._reader.join(timeout=2)
        for w in self._workers:
            w.results.close()
        if self.files:
            self.sweep(older_than=None)
            with contextlib.suppress(OSError):
                Path(self.files).rmdir()

    def sweep(self, older_than: float | None) -> None:
        """Delete the workers' files last written or handed out (ism/app/render.py touches a file it hands out
        again) more than ``older_than`` seconds ago; None: all of them."""
        now = time.time()
        # os.walk, not Path.rglob: a folder a run is writing into, or that another sweep empties, may vanish while
        # it is listed (rglob raises then; walk skips it)
        for folder, _, names in os.walk(self.files, topdown=False):
            for name in names:
                path = os.path.join(folder, name)
                with contextlib.suppress(OSError):
                    if older_than is None or now - os.stat(path).st_ctime > older_than:
                        os.unlink(path)
            if folder != self.files:
                with contextlib.suppress(OSError):             # (an emptied content folder)
                    os.rmdir(folder)

    # --- internals (hold self._lock) -----------------------------------------------------
    def _dispatch(self) -> None:
        for w in self._workers:
            if not self._pending:
                return
            if w.job is None and w.proc.is_alive():
                job = self._pending.popleft()
                job.status, job.started = Status.RUNNING, time.monotonic()
                w.job = job
                self.computed += 1
                w.jobs.put((job.id, job.work, self.max_seconds))

    def _finish(self, job: Job, status: Status, message: str) -> None:
        job.status, job.message = Status(status), message
        if self._running.get(job.key) is job:
            del self._running[job.key]
        cut = bool(job.states) and job.states[-1].regen_stop.startswith("Regeneration stopped at iteration")
        if job.status == Status.DONE and not cut and not job.cancelled:   # a run cut short by the clock is not the run
            self._cache[job.key] = job
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        self._lock.notify_all()

    def _read(self) -> None:
        """Reads every worker's own pipe. Each worker has one: a worker killed in the middle of a message (out of
        memory, hung) leaves a broken message in its own pipe only, which goes with it; a shared queue's stream
        was corrupted for the others too, and the runs they then sent were lost."""
        last_check, broken = time.monotonic(), set()
        while not self._closed:
            with self._lock:
                conns = [w.results for w in self._workers if w.results not in broken]
            try:
                ready = mp_connection.wait(conns, timeout=1.0)
            except (OSError, ValueError):    # a pipe closed meanwhile (close(), a worker replaced)
                ready = []
            for conn in ready:
                try:
                    msg = conn.recv()
                except (EOFError, OSError):  # its worker is gone (_check_workers replaces it)
                    broken.add(conn)
                    continue
                except Exception:            # a message that cannot be read
                    log.exception("unreadable message from a run worker")
                    continue
                try:
                    self._handle(*msg)
                except Exception:            # never let the reader die: every run would hang
                    log.exception("run pool reader")
            try:
                if time.monotonic() - last_check >= 1.0:   # also while other workers keep sending
                    last_check = time.monotonic()
                    self._check_workers()
                    if self.files and last_check - self._swept >= min(self.keep_files, 60.0):
                        self._swept = last_check
                        self.sweep(self.keep_files)
            except Exception:                # never let the reader die: every run would hang
                log.exception("run pool reader")

    def _handle(self, job_id: int, kind: str, *rest) -> None:
        with self._lock:
            w = next((w for w in self._workers if w.job is not None and w.job.id == job_id), None)
            if w is None:
                return
            job = w.job
            if kind == "state":
                state, new, readings = rest
                if not job.states:
                    job.computing = time.monotonic()
                job.frames.extend(new)
                if readings is not None:            # the final state: every frame's reading
                    for f, r in zip(job.frames, readings):
                        f.probs = r
                if job.states:                      # a stage shown before is the same object (encoded once)
                    prev = job.states[-1]
                    state = replace(state, **{k: getattr(prev, k) for k in SHARED if getattr(prev, k) is not None})
                job.states.append(replace(state, regeneration=list(job.frames)))
                self._lock.notify_all()
                return
            if kind == "failed":
                log.error("run failed in a worker: %s", rest[0])
            if kind == "done":
                self._durations.append(time.monotonic() - job.started)
            w.job = None
            self._finish(job, Status(kind), rest[0])
            self._dispatch()

    def _check_workers(self) -> None:
        """A worker that died (out of memory, killed) or computes a run far past its ceiling (hung) fails
        its run and is replaced; not while the interpreter exits (multiprocessing then ends the workers itself)."""
        with self._lock:
            for i, w in enumerate(self._workers):
                if self._closed or _exiting.is_set():
                    return
                job, now = w.job, time.monotonic()
                # from its first state (a worker that is still starting up, slow on a loaded machine, is not hung)
                hung = job is not None and bool(job.states) and now - job.computing > self.max_seconds + HUNG_AFTER
                if w.proc.is_alive() and not hung:
                    continue
                if hung:
                    log.error("a run worker is still computing run %d after %.0f s; replacing it", job.id,
                              time.monotonic() - job.started)
                    w.proc.kill()
                else:
                    log.error("a run worker exited (code %s); starting another", w.proc.exitcode)
                if job is not None:
                    self._finish(job, Status.FAILED, "the worker computing this run stopped answering")
                w.results.close()                    # (its half-written message, if any, goes with it)
                self._workers[i] = self._start_worker()
            self._dispatch()

    def _start_worker(self) -> Worker:
        ctx = mp.get_context("spawn")
        jobs, cancel = ctx.Queue(), ctx.Value("q", -1)
        results, send = ctx.Pipe(duplex=False)           # this worker's own channel back (``_read``)
        proc = ctx.Process(target=_worker, args=(self.defenses, jobs, send, cancel, self.threads, self.files),
                           daemon=True)
        self._procs = [p for p in self._procs if p.is_alive()] + [proc]
        # Ctrl+C in a terminal interrupts the whole process group: a worker leaves it to the app, which stops its
        # workers itself (close()); they would print a KeyboardInterrupt traceback each, mid-import or mid-run.
        # A signal blocked here stays blocked in the child (any thread may start a worker: no signal.signal).
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            with _light_main():
                proc.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        send.close()                                     # (the worker's end: its exit is then this pipe's EOF)
        return Worker(proc, jobs, cancel, results)


class Follower:
    """One visitor's view of a run: iterate for ``Waiting`` notes and ``DemoState``s (and ``None`` every ``TICK``
    seconds while nothing new comes, so that a generator closed meanwhile is left promptly); ``close()``, from
    any thread, leaves. States that arrived while the visitor was busy are skipped but the latest: each state
    holds everything before it, so a cached run is one state, its final one."""

    def __init__(self, pool: RunPool, job: Job):
        self.pool, self.job, self._left = pool, job, False

    def __iter__(self):
        i, last_wait, waited = 0, None, -math.inf
        try:
            while not self._left:
                with self.pool._lock:
                    if i >= len(self.job.states) and not self.job.finished and not self._left:
                        self.pool._lock.wait(TICK)    # (woken by a new state, the run's end, or close())
                    states, status = self.job.states[i:], self.job.status
                if self._left:
                    break
                if status == Status.QUEUED:
                    w = self.pool.place(self.job)       # (None once it starts)
                    seen = (w.place, round(w.seconds)) if w else None
                    if w is not None and seen != last_wait and time.monotonic() - waited >= WAIT_GAP:
                        yield w                         # a new place in line, at most every WAIT_GAP seconds
                        last_wait, waited = seen, time.monotonic()
                    else:
                        yield None
                    continue
                if states:                     # a follower that fell behind gets the latest, most complete
                    yield states[-1]           # state only (a cached run: its final state at once)
                i += len(states)
                if self.job.finished and i >= len(self.job.states):
                    break
                if not states:
                    yield None                 # nothing new this TICK: the caller may leave or send a keep-alive
        finally:
            self.close()
        if self._left and not self.job.finished or self.job.status == Status.STOPPED:
            raise Stopped()
        if self.job.status == Status.CAP:
            raise OverCap(self.job.message)
        if self.job.status == Status.FAILED:
            raise RuntimeError(self.job.message.split("\n")[0])

    def close(self) -> None:
        with self.pool._lock:          # Stop and a cancelled event may close it from two threads at once
            if self._left:
                return
            self._left = True
            self.pool._lock.notify_all()   # (an iteration waiting for news leaves at once)
        self.pool.leave(self.job)


