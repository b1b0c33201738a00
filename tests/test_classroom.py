"""A class at once (ism/app/runner.py): worker processes without a shared lock, identical runs computed
once, Stop, ceilings, places in line, share links and result files that are never rewritten."""
import os
import threading
import time
from pathlib import Path

import pytest
from conftest import ROOT

from ism.app.demo import run_demo
from ism.app.handlers import DemoHandler
from ism.app.links import parse_link, share_query
from ism.app.render import png_file
from ism.app.request import RunRequest, UserError
from ism.app.runner import RunPool, Waiting
from ism.attacks.standard import MAX_SQUARE_QUERIES, TABLE

pytestmark = pytest.mark.slow
CAT, DOG = str(ROOT / "examples/cifar10/cat_0.png"), str(ROOT / "examples/cifar10/dog_0.png")


@pytest.fixture(scope="module")
def pool(defense):
    p = RunPool({"cifar10": defense}, workers=2, cache_size=8)
    yield p
    p.close()


@pytest.fixture(scope="module")
def handler(defense, pool):
    return DemoHandler(defense, "cifar10", pool=pool)


def wait_until(cond, limit=60.0):
    """Liveness, not timing: waits up to ``limit`` seconds for ``cond``."""
    t = time.time()
    while not cond() and time.time() - t < limit:
        time.sleep(0.02)
    return cond()


def pngs(folder) -> list[str]:
    """The PNG files under ``folder``; os.walk, because the pool deletes folders while they are listed."""
    return [n for _, _, names in os.walk(folder) for n in names if n.endswith(".png")]


def final(stream):
    states = [s for s, _, _ in stream]
    return states[-1]


def test_same_seed_same_result_under_concurrency(defense, handler):
    """Six different requests at once through the workers give exactly what each gives alone in-process."""
    asks = [(CAT, "pgd", 8 / 255, 5, "gray-box", 3), (DOG, "pgd", 0.1, 3, "gray-box", 3),
            (CAT, "square", 8 / 255, 2, "gray-box", 5), (DOG, "fgsm", 4 / 255, 1, "gray-box", 1),
            (CAT, "pgd", 8 / 255, 2, "adaptive white-box", 9), (DOG, "mifgsm", 8 / 255, 3, "gray-box", 2)]
    results = [None] * len(asks)

    def one(i):
        path, attack, eps, steps, threat, seed = asks[i]
        results[i] = final(handler.run(RunRequest(path, attack, eps, steps, threat, 2, 3, seed)))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(asks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for (path, attack, eps, steps, threat, seed), got in zip(asks, results):
        x = handler.prepare(path).tensor
        req = RunRequest(None, attack, eps, steps, threat, restarts=2, iterations=3, seed=seed)
        *_, alone = run_demo(defense, x, handler.example_of(path).label, req)
        assert (got.adversarial.image == alone.adversarial.image).all(), (attack, threat)
        assert (got.final.image == alone.final.image).all() and got.verdict == alone.verdict
        # every regeneration frame arrives with its reading (the frames gallery captions each with it)
        # (read one at a time while played back or in one batch at the end: the same to float rounding)
        assert [list(f.top3) for f in got.regeneration] == [list(f.top3) for f in alone.regeneration]
        assert [v for f in got.regeneration for v in f.top3.values()] == pytest.approx(
            [v for f in alone.regeneration for v in f.top3.values()], abs=1e-5) and got.regeneration[1].top3


def test_identical_requests_are_computed_once(handler, pool):
    before = pool.computed
    out = [None] * 5

    def one(i):
        out[i] = final(handler.run(RunRequest(DOG, "pgd", 6 / 255, 4, "gray-box", 2, 5, 31)))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert pool.computed == before + 1                       # five visitors, one computation
    assert all(o.verdict == out[0].verdict and (o.final.image == out[0].final.image).all() for o in out)
    again = final(handler.run(RunRequest(DOG, "pgd", 6 / 255, 4, "gray-box", 2, 5, 31)))   # later: from the cache
    assert pool.computed == before + 1 and again.verdict == out[0].verdict


def test_stop_ends_the_run_and_frees_the_worker(handler, pool):
    stream = handler.run(RunRequest(CAT, "pgd", 8 / 255, 50, "adaptive white-box", 8, 100, 77), session="visitor-a")
    next(stream)                                             # the run has started
    assert wait_until(lambda: pool.busy >= 1)
    assert handler.stop("visitor-a")
    rest = list(stream)                                      # the stream ends: no final state
    assert not any(s.done for s, _, _ in rest)
    assert wait_until(lambda: pool.busy == 0), "the worker kept computing a stopped run"
    assert final(handler.run(RunRequest(DOG, "fgsm", 8 / 255, 1, "gray-box", 1, 2, 78))).done   # the next run goes through
    assert not handler.stop("visitor-a")                     # nothing left to stop


def test_a_run_past_its_ceiling_ends_with_a_sentence(defense):
    p = RunPool({"cifar10": defense}, workers=1, max_seconds=0.5)
    try:
        h = DemoHandler(defense, "cifar10", pool=p)
        with pytest.raises(UserError, match="limit of 0.5 s"):
            list(h.run(RunRequest(CAT, "pgd", 8 / 255, 50, "adaptive white-box", 8, 100, 5)))
        assert wait_until(lambda: p.busy == 0)
    finally:
        p.close()


def test_a_visitor_waiting_sees_a_place_in_line(defense):
    p = RunPool({"cifar10": defense}, workers=1, queue_size=1)
    try:
        h = DemoHandler(defense, "cifar10", pool=p)
        busy = h.run(RunRequest(CAT, "pgd", 8 / 255, 50, "adaptive white-box", 8, 100, 6), session="a")
        next(busy)
        assert wait_until(lambda: p.busy == 1)
        waiting = h.run(RunRequest(DOG, "fgsm", 8 / 255, 1, "gray-box", 1, 2, 6))
        first, _, _ = next(waiting)
        assert "you are next" in first.waiting and "about" in first.waiting
        with pytest.raises(UserError, match="server is full"):     # the line is full: one sentence
            next(h.run(RunRequest(DOG, "fgsm", 8 / 255, 1, "gray-box", 1, 2, 99)))
        h.stop("a")
        assert final(waiting).done                                  # its turn came
    finally:
        p.close()


def test_waiting_note_counts_the_line():
    from ism.app.handlers import waiting_text

    assert "number 3 in line, about 4 s" in waiting_text(Waiting(3, 4.2))


def test_square_is_capped_and_says_so(defense, handler):
    s = final(handler.run(RunRequest(CAT, "square", 8 / 255, 50, "gray-box", 1, 1, 0)))
    assert any(f"stops it at {MAX_SQUARE_QUERIES:,}" in w for w in s.warnings)
    assert f"at most {MAX_SQUARE_QUERIES:,} per run" in TABLE["square"].note(8 / 255, 50)
    assert f"{MAX_SQUARE_QUERIES:,} queries" in TABLE["square"].note(8 / 255, 50)


def test_share_link_round_trip(handler, tmp_path):
    q = share_query(handler, RunRequest(CAT, "pgd", 8 / 255, 10, "adaptive white-box", seed=42))
    assert q.startswith("?") and "example=cat_0" in q and "run=1" in q
    from urllib.parse import parse_qsl

    link = parse_link(dict(parse_qsl(q[1:])), {"cifar10": handler})
    r = link.request
    assert (r.defense, r.attack, r.steps, r.threat, r.seed, link.run) == \
        ("cifar10", "pgd", 10, "adaptive white-box", 42, True)
    assert r.file.endswith("cat_0.png") and abs(r.eps - 8 / 255) < 1e-4
    assert parse_link({}, {"cifar10": handler}) is None                    # no query: the page as it is
    upload = tmp_path / "mine.png"
    from PIL import Image

    Image.new("RGB", (40, 40), (10, 200, 30)).save(upload)
    with pytest.raises(UserError, match="Only the example pictures"):      # uploads are never put in links
        share_query(handler, RunRequest(str(upload), "pgd", 8 / 255, 10, "gray-box", seed=0))
    for bad, words in (({"dataset": "mnist"}, "does not have"), ({"example": "cat_9"}, "not among"),
                       ({"eps": "2"}, "epsilon must lie"), ({"attack": "boom"}, "choose one of"),
                       ({"seed": "-1"}, "seed must be")):
        with pytest.raises(UserError, match=words):
            parse_link(bad, {"cifar10": handler})


def test_result_files_are_never_rewritten(monkeypatch, tmp_path):
    import numpy as np

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    img = (np.arange(32 * 32 * 3) % 251).astype(np.uint8).reshape(32, 32, 3)
    a = png_file(img)
    inode = __import__("os").stat(a).st_ino
    b = png_file(img.copy())                                  # the same picture from another run
    assert a == b and __import__("os").stat(b).st_ino == inode   # served as is: not written again
    assert a.startswith(str(tmp_path)) and a.endswith(".png")
    assert png_file(img[::-1].copy()) != a
    assert not list(tmp_path.rglob("*.tmp"))                  # no half-written file left behind


def test_the_worker_is_replaced_if_it_dies(defense):
    p = RunPool({"cifar10": defense}, workers=1)
    try:
        h = DemoHandler(defense, "cifar10", pool=p)
        assert final(h.run(RunRequest(CAT, "fgsm", 8 / 255, 1, "gray-box", 1, 1, 0))).done
        old = p._workers[0].proc
        old.kill()
        assert wait_until(lambda: p._workers[0].proc is not old and p._workers[0].proc.is_alive())
        assert final(h.run(RunRequest(DOG, "fgsm", 8 / 255, 1, "gray-box", 1, 1, 0))).done
    finally:
        p.close()


def test_a_worker_killed_mid_run_fails_that_run_only(defense):
    """A worker killed while it streams a run (out of memory, say) may die in the middle of a message: its run fails
    with a sentence, and the other worker's runs and the next ones still arrive whole (each worker has its own
    pipe back; a shared queue's stream was corrupted for everyone, and later runs hung)."""
    p = RunPool({"cifar10": defense}, workers=2)
    try:
        h = DemoHandler(defense, "cifar10", pool=p)
        stream = h.run(RunRequest(CAT, "pgd", 8 / 255, 50, "adaptive white-box", 8, 100, 12))
        next(stream)
        assert wait_until(lambda: any(w.job is not None and w.job.states for w in p._workers))
        busy = next(w for w in p._workers if w.job is not None)
        busy.proc.kill()
        with pytest.raises(RuntimeError, match="stopped answering"):
            list(stream)
        for seed in (1, 2, 3):
            assert final(h.run(RunRequest(DOG, "fgsm", 8 / 255, 1, "gray-box", 1, 2, seed))).done
    finally:
        p.close()


def test_no_worker_is_started_while_the_interpreter_exits(defense, monkeypatch):
    """At exit multiprocessing terminates the workers; the pool must not start new ones then."""
    from ism.app import runner

    p = RunPool({"cifar10": defense}, workers=1)
    try:
        monkeypatch.setattr(runner, "_exiting", threading.Event())
        runner._exiting.set()                                   # what the atexit hook does
        old = p._workers[0].proc
        old.kill()
        old.join(timeout=10)
        time.sleep(2.5)                                         # two or more of the reader's checks (every second)
        assert p._workers[0].proc is old
    finally:
        p.close()


def test_in_process_runs_are_computed_once():
    """Compare and Lesson (computed in the server process): concurrent identical requests share one
    computation, later ones come from the bounded cache, and a failure is not kept."""
    from ism.app.memo import Memo

    memo, calls = Memo(size=2), []

    def slow():
        calls.append(1)
        time.sleep(0.3)
        return 42

    out = []
    threads = [threading.Thread(target=lambda: out.append(memo.get("step 1", slow))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out == [42] * 6 and len(calls) == 1
    assert memo.get("step 1", slow) == 42 and len(calls) == 1

    def boom():
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        memo.get("bad", boom)
    assert memo.get("bad", lambda: 7) == 7
    memo.get("x", lambda: 1)
    memo.get("y", lambda: 2)
    assert memo.get("step 1", lambda: "again") == "again"     # bounded: the oldest was let go


def test_a_lesson_step_is_computed_once_for_a_class(defense):
    from ism.app.handlers import CompareHandler

    h = CompareHandler(DemoHandler(defense, "cifar10"))
    first, _ = h.lesson(0)
    again, _ = h.lesson(0)
    assert h.memo.computed == 1 and again.summary == first.summary


def test_a_worker_does_not_import_the_app_again():
    """A run worker is spawned without the parent's main script (app.py: gradio, the tabs), which it would
    otherwise import again on the cores the starting server needs; it needs only ism.app.runner."""
    from multiprocessing import spawn

    from ism.app.runner import _light_main

    main = ("init_main_from_path", "init_main_from_name")
    assert any(k in spawn.get_preparation_data("w") for k in main)     # (the test runner's own main)
    with _light_main():
        assert not any(k in spawn.get_preparation_data("w") for k in main)
    assert any(k in spawn.get_preparation_data("w") for k in main)     # restored


def test_a_cached_run_is_its_final_state_encoded_once(handler, pool, monkeypatch):
    """A class on one example: the second visitor of a finished run gets its final state at once (not every state
    again), and no picture of the run is encoded again for it (the frames gallery and slide picture included)."""
    import ism.app.render as ui

    settings = RunRequest(DOG, "pgd", 6 / 255, 3, "gray-box", 2, 12, 41)
    encoded = []
    real = ui.png_file
    monkeypatch.setattr(ui, "png_file", lambda image, folder=None: encoded.append(1) or real(image, folder))
    first = []
    for state, picture, label in handler.run(settings):       # the first visitor: what the page renders of it
        first.append(state)
        values = ui.state_values(state, picture, label)
    assert first[-1].done
    frames = len(first[-1].regeneration)
    assert len(encoded) == 6 + frames + 1       # each once: panels 1-5, panel 5's change and panel 7, every
    encoded.clear()                             # regeneration frame (panel 6 is one of them), the slide picture
    again = [s for s, _, _ in handler.run(settings)]
    assert [s.done for s in again] == [True] and again[0] is first[-1]     # shared: one state, the final one
    assert ui.state_values(again[0], picture, label) == values and not encoded, "encoded again"
    assert len(values["frames"]) == frames and all(f.endswith(".png") for f, _ in values["frames"])


def test_the_workers_encode_the_pictures_the_server_only_hands_them_out(defense, monkeypatch, tmp_path):
    """With ``files`` (app.py: a folder of the server's own in gradio's cache) a run's worker encodes its pictures,
    the frames gallery and the slide picture included: the server's one Python thread, which a class keeps busy,
    encodes none. The pool deletes them ``keep_files`` seconds after they were last written or handed out (gradio
    deletes only what it handed out: a stopped run's uploaded face would stay), and all of them when it closes; the
    server makes a deleted picture again when it hands it out."""
    import ism.app.render as ui

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    runs = tmp_path / "runs"
    p = RunPool({"cifar10": defense}, workers=1, files=str(runs), keep_files=1.0)
    try:
        h = DemoHandler(defense, "cifar10", pool=p)
        encoded = []
        real = ui.png_file
        monkeypatch.setattr(ui, "png_file", lambda image, folder=None: encoded.append(1) or real(image, folder))
        for state, picture, label in h.run(RunRequest(DOG, "pgd", 6 / 255, 3, "gray-box", 2, 12, 43)):
            values = ui.state_values(state, picture, label)
        assert state.done and not encoded, "the server encoded pictures"
        files = [values[k] for k in ("original", "perturbation", "adversarial", "purified", "counter", "final",
                                     "regenerated", "picture")] + [f for f, _ in values["frames"]]
        assert len(values["frames"]) == len(state.regeneration) > 1
        assert all(f.startswith(str(runs)) and f.endswith(".png") for f in files)
        assert wait_until(lambda: not pngs(runs), limit=30), "the workers' files were not deleted"
        again = ui.state_values(state, picture, label)             # handed out again: made again, by the server
        assert all(Path(again[k]).is_file() for k in ("original", "final", "picture")) and encoded
        h.run(RunRequest(CAT, "fgsm", 8 / 255, 1, "gray-box", 1, 2, 44)).__next__()
        assert wait_until(lambda: pngs(runs))
    finally:
        p.close()
    assert not runs.exists(), "closing the pool leaves its pictures behind"
