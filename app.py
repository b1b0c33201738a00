"""ism-defense: attack an image and watch the ISM defense detect, purify and regenerate it.

Load -> build the tabs -> launch. Every tab lays itself out, wires its events and owns its words
(ism/app/tabs/); every computation lives in ism/. Weights load once at start: every defense under weights/
(per data set the paper's recipe, then the hardened one), or the one folder or Hub repo id in $ISM_WEIGHTS
(with $ISM_REVISION). One selector switches between them.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

_INTERRUPTED: list = []


def _stopped_while_starting(signum, frame):
    """Ctrl+C while the app starts (importing, loading and checking weights, starting its workers): one line and
    a quiet exit, not a KeyboardInterrupt traceback from deep inside an import. Remembered too, in case a library
    swallowed the exit (a bare ``except:`` around an optional import): ``main`` checks before it goes on, and hands
    Ctrl+C back to gradio once the app is built."""
    if not _INTERRUPTED:
        print("ism-defense: stopped (Ctrl+C) while starting.", file=sys.stderr, flush=True)
    _INTERRUPTED.append(signum)
    raise SystemExit(130)


def _exit_if_interrupted() -> None:
    if _INTERRUPTED:
        raise SystemExit(130)


if __name__ == "__main__" and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, _stopped_while_starting)   # (a Ctrl+C the shell ignores, a background job's, stays so)

import gradio as gr
import torch

from ism.app.defenses import load_defenses, startup_report
from ism.app.links import parse_link
from ism.app.render import upload_folder
from ism.app.request import UserError
from ism.app.runner import RunPool
from ism.app.serve import ServeConfig
from ism.app.tabs.attack import AttackTab
from ism.app.tabs.compare import CompareTab
from ism.app.tabs.curves import CurvesTab
from ism.app.tabs.how import HowTab
from ism.app.tabs.lesson import LessonTab
from ism.app.tabs.page import CLEAR_SELECTION, CSS, JS, Page, theme

__all__ = ["CSS", "JS", "build_demo", "main", "theme"]
HARD_CAP_MARGIN = 30.0   # a run still computing this long after ISM_MAX_SECONDS is stopped (ism/app/runner.py)


def start_pool(defenses: dict, serve: ServeConfig) -> RunPool:
    """The worker processes that compute the demo's runs (one per core; identical runs shared, finished ones
    cached): the service the page is handed. They encode each run's pictures into a folder of this server's own in
    gradio's cache, which the pool empties after ``ISM_DELETE_AFTER`` seconds and when it closes."""
    return RunPool(defenses, workers=serve.concurrency, threads=serve.threads, cache_size=serve.cache_size,
                   max_seconds=serve.max_seconds + HARD_CAP_MARGIN, queue_size=serve.queue_size,
                   files=str(Path(upload_folder()) / "ism-runs" / str(os.getpid())), keep_files=serve.delete_after)


def build_demo(defenses, results_dir: str = "results", serve: ServeConfig | None = None,
               pool: RunPool | None = None) -> gr.Blocks:
    """``defenses``: one Defense, or {key: Defense} (``load_defenses``); the first is shown first. ``pool``: the
    run workers (``start_pool``), started here if not given."""
    serve = serve or ServeConfig()
    if not isinstance(defenses, dict):
        defenses = {defenses.config.dataset: defenses}
    page = Page(defenses, serve, results_dir, pool=pool or start_pool(defenses, serve))
    with gr.Blocks(title="ISM defense: watch an adversarial attack being caught and undone",
                   delete_cache=(serve.delete_after, serve.delete_after)) as demo:
        head = gr.Markdown(page.header(page.first))
        page.choice = gr.Radio([(page.title(n), n) for n in page.handlers], value=page.first,
                               label="data set and defense", visible=len(page.handlers) > 1, elem_id="dataset")
        attack = AttackTab(page)
        tabs = [attack, CompareTab(page), LessonTab(page), CurvesTab(page), HowTab(page)]
        for tab in tabs:
            tab.wire()

        def switch(key) -> dict:
            """Everything that depends on the data set and defense, in every tab, by name."""
            updates = {head: page.header(key)}
            for tab in tabs:
                updates.update(tab.switch(key))
            return updates

        switched = list(switch(page.first))

        def open_link(request: gr.Request = None) -> dict:
            """A link's query string fills the settings (and the data set with everything that depends on it);
            a link that says run=1 then runs them. A bad link is one message and the page keeps its defaults."""
            try:
                link = parse_link(getattr(request, "query_params", None), page.handlers)
            except UserError as e:
                gr.Warning(str(e), title="This link cannot be opened")
                return {attack.c["autorun"]: False}      # (an empty dict would be no answer at all to gradio)
            if link is None:
                return {attack.c["autorun"]: False}
            key = link.request.defense
            return {page.choice: key, **switch(key), **attack.show(link.request), attack.c["autorun"]: link.run}

        # .input: the visitor's own choice (a link sets the data set together with what depends on it); it
        # leaves the visitor's runs in progress, or their last frames would land on the new data set's page
        page.choice.input(attack.leave, None, None, cancels=page.runs, api_name=False, queue=False)
        page.choice.input(switch, page.choice, switched, api_name=False, js=CLEAR_SELECTION)
        link_outputs = list(dict.fromkeys([page.choice, *switched, *attack.shown, attack.c["autorun"]]))
        demo.load(open_link, None, link_outputs, api_name=False).then(
            None, attack.c["autorun"], None,
            js="(go) => { if (go) setTimeout(() => document.getElementById('run').click(), 300); }")
        curves = tabs[3]
        demo.load(curves.saved, [curves.attack, page.choice, curves.span], [curves.plot, curves.note], api_name=False)
    demo.handlers = page.handlers   # for tests and benchmarks: handler.active counts runs in progress
    demo.pool = page.pool           # the worker processes (closed by main's caller or at exit)
    demo.handler = page.handlers[page.first]
    demo.page = page
    return demo


def launch_options(serve: ServeConfig) -> dict:
    """What every launch of the app passes (``main`` and the tests' server): its look and its threads."""
    return dict(css=CSS, js=JS, theme=theme(),
                max_threads=serve.queue_size + 16)   # every waiting visitor's stream holds a thread


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)   # not one line per internal request
    serve = ServeConfig.from_env()
    torch.set_num_threads(serve.threads)
    pool = None
    try:       # (Ctrl+C until launch: _stopped_while_starting; the workers are stopped whenever they were started)
        _exit_if_interrupted()
        defenses = load_defenses(os.environ.get("ISM_WEIGHTS") or None, os.environ.get("ISM_REVISION") or None)
        print(f"ism-defense: serving {', '.join(defenses)}; {serve}")
        for line in startup_report(defenses):
            print("  " + line)
        pool = start_pool(defenses, serve)
        demo = build_demo(defenses, serve=serve, pool=pool)
        demo.queue(default_concurrency_limit=serve.concurrency, max_size=serve.queue_size)
        _exit_if_interrupted()
        if signal.getsignal(signal.SIGINT) is _stopped_while_starting:
            signal.signal(signal.SIGINT, signal.default_int_handler)   # gradio's launch closes on Ctrl+C
        demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"), show_error=False,
                    **launch_options(serve))
    except KeyboardInterrupt:   # (one in the moment before gradio waits for it)
        print("ism-defense: stopped (Ctrl+C).", file=sys.stderr)
    finally:   # Ctrl+C: the workers are stopped and their queues closed (no leaked-semaphore warning)
        if pool is not None:
            pool.close()


if __name__ == "__main__":
    main()
