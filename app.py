"""ism-defense: attack an image and watch the ISM defense detect, purify and regenerate it.

Wiring only: every computation lives in ism/ (ism.app.ui adapters, ism.app.demo, ism.eval.curves, ism.app.diagram).
Weights load once at start: every data set with a folder under weights/ (CIFAR-10, CelebA), or the
one folder or Hub repo id in $ISM_WEIGHTS (with $ISM_REVISION). A dataset selector switches between them.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os

import gradio as gr
import torch

from ism.app.demo import MAX_EPS, MINIMAL, THREATS
from ism.app.diagram import pipeline_figure
from ism.app.lesson import STEPS
from ism.app.live import adaptive_summary, measure_curves
from ism.app.runner import RunPool
from ism.app.serve import ServeConfig
from ism.app.ui import (
    OUTPUTS,
    CompareHandler,
    DemoHandler,
    UserError,
    attack_note,
    curves_intro,
    how_text,
    limits_text,
    load_defenses,
    parse_link,
    share_query,
    startup_report,
    state_values,
    threat_help,
)
from ism.attacks.standard import ATTACKS
from ism.data.datasets import DATASETS
from ism.data.examples import rule as example_rule
from ism.data.images import to_display
from ism.data.subsets import evenly_spaced
from ism.eval.curves import curves_from_results, load_results, plot_curves
from ism.eval.report import curves_note

HARD_CAP_MARGIN = 30.0   # a run still computing this long after ISM_MAX_SECONDS is stopped (runner.py)
READS = {"purified image (ISM)": "purified", "regenerated image (GAN)": "regenerated"}


def read_label(defense) -> str:
    """The read choice matching the defense's own (config.final_input)."""
    return next((k for k, v in READS.items() if v == defense.config.final_input), None)


log = logging.getLogger("ism-defense")
# the examples gallery: all 20 thumbnails in three rows of seven at any width (Gradio's grid keeps each
# column at least 100 px, which clipped the 7th column and hid the third row behind an inner scroll)
PRIVACY = ("🔒 Your picture is used for your runs only: it is not logged, not shared with other visitors and "
           "not kept. The server deletes uploaded files and results after 10 minutes (`ISM_DELETE_AFTER`).")
COMPARE_INTRO = ("**One image, one attack, attacked separately against each defense.** Each row is a defense; "
                 "each is attacked twice: by a *gray-box* attacker who knows only its classifier, and by an "
                 "*adaptive white-box* attacker who attacks that defense itself. A defense that holds only against "
                 "the first is not robust: that is how MagNet and Defense-GAN were broken (Carlini & Wagner 2017, "
                 "Athalye et al. 2018).")
LESSON_INTRO = ("**A lesson in four clicks** (about a minute in class). Press the steps in order; each runs live on "
                "the same example and says what to look for. The sentence under each result is computed from "
                "what actually happened.")
CSS = """
#examples .grid-container, #cmp-examples .grid-container, #frames .grid-container {
    grid-template-columns: repeat(var(--grid-cols), minmax(0, 1fr)) !important;
    grid-template-rows: none !important; grid-auto-rows: auto !important; }
#examples .grid-wrap, #cmp-examples .grid-wrap { overflow-y: hidden !important; padding-top: 2.4rem !important; }
#examples .thumbnail-item, #cmp-examples .thumbnail-item, #frames .thumbnail-item { aspect-ratio: 1 / 1 !important; }
#examples .fixed-height, #cmp-examples .fixed-height { min-height: 0 !important; }
#examples .caption-label, #cmp-examples .caption-label, #frames .caption-label { max-width: 100% !important; }
/* the panels' top-3 readings: long class names ("automobile") and their percentages fit a narrow panel */
.top3 .confidence-set { font-size: var(--text-sm) !important; }
.top3 .confidence-set .line { padding-left: 2px !important; padding-right: 2px !important; min-width: 4px; }
.top3 .confidence-set .text { overflow-wrap: anywhere; }
"""
ATTACK_LABELS = {"FGSM": "fgsm", "PGD": "pgd", "BIM": "bim", "MI-FGSM": "mifgsm", "CW (L2)": "cw",
                 "DeepFool (L2)": "deepfool", "Square (black-box)": "square"}
assert set(ATTACK_LABELS.values()) == set(ATTACKS)


# Images (and figures holding images) are sent as PNG: lossless, so the attacked pixels a visitor sees or
# downloads are the attack's own (gradio's default, WebP, is lossy: quality 80), and quicker to encode
# (a 128-pixel stage image: 1.1 ms against 2.4 ms).
PIXELS = "png"


def stage_image(title: str, label: str | None = None, **kw) -> gr.Image:
    """One stage panel of the demo: its title in bold over its image."""
    gr.Markdown(f"**{title}**")
    return gr.Image(label=label or title, show_label=False, interactive=False, height=140, format=PIXELS, **kw)


def reading() -> gr.Label:
    """A panel's top-3 reading (styled by ``.top3`` to fit narrow panels)."""
    return gr.Label(num_top_classes=3, show_label=False, elem_classes="top3")


def build_demo(defenses, results_dir: str = "results", serve: ServeConfig | None = None) -> gr.Blocks:
    """``defenses``: one Defense, or {dataset name: Defense}; the first is shown first."""
    serve = serve or ServeConfig()
    if not isinstance(defenses, dict):
        defenses = {defenses.config.dataset: defenses}
    pool = RunPool(defenses, workers=serve.concurrency, threads=serve.threads, cache_size=serve.cache_size,
                   max_seconds=serve.max_seconds + HARD_CAP_MARGIN, queue_size=serve.queue_size)
    handlers = {name: DemoHandler(d, name, max_seconds=serve.max_seconds, playback=serve.playback, pool=pool)
                for name, d in defenses.items()}
    comparers = {name: CompareHandler(h) for name, h in handlers.items()}
    first = next(iter(handlers))

    def handler_for(dataset) -> DemoHandler:
        if dataset not in handlers:
            raise gr.Error(f"unknown dataset {dataset!r}; this server has {', '.join(handlers)}")
        return handlers[dataset]

    def title(name) -> str:
        return DATASETS[name].title if name in DATASETS else name

    def results_path(name) -> str:
        return f"{results_dir}/{name}.json"

    def gallery_items(name):
        return [(e.path, e.name) for e in handlers[name].examples]

    def header(name) -> str:
        return (f"## Watch an adversarial attack being caught and undone\n"
                f"A tiny, invisible change to an image fools a classifier; the Instance Sparsity Mapping defense "
                f"(Haque & Kang, 2021) tries to catch and undo it. **{title(name)}**: pick an image, press **Run**. "
                + adaptive_summary(load_results(results_path(name))))

    @contextlib.contextmanager
    def one_message(dataset):
        """A visitor's mistake is one sentence (no traceback in the log); a real bug is logged in full
        and the page gets a sentence."""
        try:
            yield
        except gr.Error:
            raise
        except UserError as e:
            log.info("user error (%s): %s", dataset, e)
            raise gr.Error(str(e), title="Cannot run this", print_exception=False) from None
        except Exception as e:
            log.exception("run failed (%s)", dataset)
            raise gr.Error(f"The server failed on this run ({type(e).__name__}); it was logged. Other settings "
                           "may work.", title="Server error", print_exception=False) from None

    def defend(file, attack, eps, steps, threat, restarts, iterations, seed, dataset=first, read="",
               request: gr.Request = None):
        handler = handler_for(dataset)
        with one_message(dataset):
            stream = handler.run(file, ATTACK_LABELS.get(attack, attack), eps, steps, threat, restarts, iterations, seed,
                                 read=READS.get(read, read), session=getattr(request, "session_hash", None))
            for s, note, label in stream:
                # every update carries every output: resending a value is cheaper than gr.skip(), which in
                # gradio 6 rebuilds the component and its config (README, The app: benchmarks/latency_ab.py)
                yield tuple(state_values(s, note, label).values())

    def stop_run(dataset, request: gr.Request = None):
        """Stop: leave this visitor's run (cancelled unless another visitor follows it) and say so."""
        session = getattr(request, "session_hash", None)
        for h in handlers.values():    # (a run still waiting in gradio's own queue is cancelled by the event)
            h.stop(session)
        return "### ⏹ Stopped. Press **Run** to start again."

    def compare_defenses(file, attack, eps, steps, seed, dataset=first):
        with one_message(dataset):
            handler_for(dataset)
            result = comparers[dataset].run(file, ATTACK_LABELS.get(attack, attack), eps, steps, seed)
            return result.summary, result.figure, result.table, result.api()

    def lesson_step(index, dataset=first):
        with one_message(dataset):
            handler_for(dataset)
            result, text = comparers[dataset].lesson(index)
            return text, result.summary, result.figure, result.table

    def preview(file, dataset):
        if not file:
            return None, ""
        try:
            x, note = handler_for(dataset).prepare(file)
        except UserError as e:
            gr.Warning(str(e))
            return None, f"❌ {e}"
        return to_display(x), ("ℹ️ " + note if note else "ready")

    def upload_label(dataset):
        d = handler_for(dataset).defense
        crop = "the face is " if dataset == "celeba" else ""
        return f"upload ({crop}centre-cropped, resized to {d.image_size}x{d.image_size} as in training)"

    def use_photo(path):
        return path if path else gr.skip()

    def gallery_label(dataset):
        return f"Examples (click one): {example_rule(dataset)}"

    def pick_example(dataset, evt: gr.SelectData):
        return handler_for(dataset).examples[evt.index].path

    def switch(dataset):
        """Everything that depends on the data set: examples, defaults, texts, figures."""
        d = handler_for(dataset).defense
        return (header(dataset), gr.update(value=gallery_items(dataset), label=gallery_label(dataset)),
                gr.update(value=None, label=upload_label(dataset)), None, "",
                d.config.regen_restarts, d.config.regen_steps, pipeline_figure(d.config.gate), how_text(d),
                *saved_curves("PGD", dataset), curves_intro(d), None, read_label(d))

    def share_link(file, attack, eps, steps, threat, seed, dataset):
        with one_message(dataset):
            return share_query(handler_for(dataset), file, ATTACK_LABELS.get(attack, attack), eps, steps, threat, seed)

    def reset_compare(dataset):
        return gr.update(value=gallery_items(dataset)), None, "", None, ""

    def open_link(request: gr.Request = None):
        """A link's query string fills the settings (and the data set with everything that depends on it);
        a link that says run=1 then runs them. A bad link is one message and the page keeps its defaults."""
        keep = [gr.skip()] * (len(switched) + 6)
        try:
            link = parse_link(getattr(request, "query_params", None), handlers)
        except UserError as e:
            gr.Warning(str(e), title="This link cannot be opened")
            return keep + [False]
        if link is None:
            return keep + [False]
        label = next(k for k, v in ATTACK_LABELS.items() if v == link.attack) if link.attack else gr.skip()
        page = list(switch(link.dataset))
        page[switched.index(file)] = gr.update(value=link.example, label=upload_label(link.dataset))
        values = [link.dataset, *page, label, link.eps if link.eps is not None else gr.skip(),
                  link.steps or gr.skip(), link.threat or gr.skip(), link.seed if link.seed is not None else gr.skip()]
        return values + [link.run]

    def check_settings(file, attack, eps, steps, threat, restarts, iterations, seed, dataset=first, read=""):
        with one_message(dataset):
            handler_for(dataset).check(file, ATTACK_LABELS.get(attack, attack), eps, steps, threat, restarts,
                                       iterations, seed, READS.get(read, read))

    def scrubber(frames):
        """After a run: the slider spans every regeneration iteration and shows the last."""
        n = len(frames or [])
        if not n:
            return gr.update(value=0, maximum=1, interactive=False), None
        return gr.update(value=n - 1, maximum=n - 1, interactive=True), frames[-1][0]

    def scrub_to(i, frames):
        frames = frames or []
        return frames[min(int(i), len(frames) - 1)][0] if frames else None

    def attack_settings(attack, eps, steps):
        """Epsilon applies to every attack but CW and DeepFool (L2, minimal perturbation): say so."""
        name = ATTACK_LABELS.get(attack, attack)
        return gr.update(interactive=name not in MINIMAL), attack_note(name, eps, steps)

    def saved_curves(attack, dataset):
        path = results_path(dataset)
        res = load_results(path)
        if not res:
            return None, (f"No evaluation results yet: run `python -m ism.evaluate --dataset {dataset}`, "
                          "or measure live below.")
        note = curves_note(res, path)
        n = res.get("clean", {}).get("images", "?")
        return plot_curves(curves_from_results(res, ATTACK_LABELS.get(attack, "pgd")),
                           f"{attack} on {title(dataset)}: accuracy against epsilon ({n} test images)"), note

    def live_curves(attack, n, dataset, progress=gr.Progress()):
        handler = handler_for(dataset)
        defense = handler.defense
        ex = [handler.examples[i] for i in evenly_spaced(len(handler.examples), int(n))]   # every class
        if not ex:
            raise gr.Error("no example images available")
        x = torch.cat([handler.prepare(e.path)[0] for e in ex])
        y = torch.tensor([e.label for e in ex])
        series = measure_curves(defense, x, y, [0.0, 4 / 255, 8 / 255, 16 / 255, 0.1, 0.2, 0.3, 0.4],
                                ATTACK_LABELS.get(attack, "pgd"), adaptive=True, progress=progress)
        return plot_curves(series, f"{attack} on {title(dataset)}, measured live on {len(ex)} example images "
                                   f"({len({e.label for e in ex})} classes)")

    defense = handlers[first].defense
    with gr.Blocks(title="ISM defense: watch an adversarial attack being caught and undone",
                   delete_cache=(serve.delete_after, serve.delete_after)) as demo:
        head = gr.Markdown(header(first))
        dataset = gr.Radio([(title(n), n) for n in handlers], value=first, label="dataset",
                           visible=len(handlers) > 1)
        with gr.Tab("Attack & defend"):
            with gr.Row():
                with gr.Column(scale=3, min_width=520):
                    gallery = gr.Gallery(value=gallery_items(first), label=gallery_label(first), columns=7, rows=3,
                                         height="auto", allow_preview=False, object_fit="contain", elem_id="examples")
                    with gr.Accordion("…or your own image: upload a file, take a webcam photo or paste one",
                                      open=False):
                        with gr.Row():
                            file = gr.File(label=upload_label(first), file_types=["image"], type="filepath",
                                           height=150, elem_id="own-image")
                            camera = gr.Image(label="webcam photo, or paste (Ctrl+V)", sources=["webcam", "clipboard"],
                                              type="filepath", format="png", height=150, elem_id="camera")
                            seen = gr.Image(label="what the model sees", interactive=False, height=130, width=130,
                                            format=PIXELS)
                        gr.Markdown(PRIVACY)
                    prep_note = gr.Markdown()
                with gr.Column(scale=2, min_width=360):
                    with gr.Row():
                        attack = gr.Dropdown(list(ATTACK_LABELS), value="PGD", label="attack", min_width=150)
                        threat = gr.Radio(list(THREATS), value="gray-box", label="the attacker knows", min_width=200,
                                          info="gray-box: the classifier only; adaptive: the whole defense")
                    eps = gr.Slider(0, MAX_EPS, value=round(8 / 255, 4), step=1 / 255, label="epsilon (attack strength)")
                    eps_note = gr.Markdown(attack_note("pgd", 8 / 255, 10), elem_id="eps-note")
                    with gr.Row():
                        run = gr.Button("Run", variant="primary", elem_id="run")
                        stop = gr.Button("Stop", variant="stop")
                    with gr.Accordion("more settings", open=False):
                        steps = gr.Slider(1, 50, value=10, step=1, label="attack steps (iterative attacks)")
                        read = gr.Radio(list(READS), value=read_label(defense), label="the classifier reads",
                                        info="for an input the defense treats as attacked; the default is what "
                                             "this defense was trained to read")
                        with gr.Row():
                            restarts = gr.Slider(1, 8, value=defense.config.regen_restarts, step=1,
                                                 label="regeneration restarts")
                            iterations = gr.Slider(0, 100, value=defense.config.regen_steps, step=1,
                                                   label="regeneration iterations")
                        seed = gr.Number(value=0, precision=0, label="seed (0 to 4294967295)")
                        gr.Markdown(limits_text(serve.max_seconds), elem_id="limits")
                        gr.Markdown(threat_help())
                    with gr.Row():
                        share = gr.Button("Link to this run", size="sm", elem_id="share")
                        link = gr.Textbox(show_label=False, placeholder="a link that opens these settings and runs "
                                          "them (examples only)", interactive=False, buttons=["copy"],
                                          elem_id="share-link", min_width=200, scale=3)
            verdict = gr.Markdown("*Pick an example and press Run.*", elem_id="verdict")
            with gr.Row(equal_height=True):
                with gr.Column(min_width=120):
                    o_img = stage_image("1 original")
                    o_lab = reading()
                with gr.Column(min_width=120):
                    p_img = stage_image("2 perturbation (amplified)")
                    p_txt = gr.Markdown()
                with gr.Column(min_width=120):
                    a_img = stage_image("3 attacked: what the attacker's target reads", label="3 adversarial")
                    a_lab = reading()
                with gr.Column(min_width=120):
                    gr.Markdown("**4 detector**")
                    d_lab = gr.Label(label="4 detector verdict", show_label=False)
                    d_txt = gr.Markdown()
                with gr.Column(min_width=120):
                    u_img = stage_image("5 ISM purified")
                    u_lab = reading()
                with gr.Column(min_width=120):
                    r_img = stage_image("6 regeneration (live)", elem_id="regen-live")
                    r_txt = gr.Markdown()
                with gr.Column(min_width=120):
                    f_img = stage_image("7 what the classifier read")
                    f_txt = gr.Markdown(elem_id="final-text")
                    f_lab = reading()
            with gr.Row():
                with gr.Column(scale=3):
                    frames = gr.Gallery(label="every regeneration iteration (browse after the run)", columns=6, format=PIXELS,
                                        height=190, object_fit="contain", elem_id="frames")
                    with gr.Row():
                        scrub = gr.Slider(0, 1, value=0, step=1, label="scrub through the regeneration: iteration",
                                          interactive=False, elem_id="scrub", scale=3)
                        scrub_img = gr.Image(label="that iteration", interactive=False, height=130, width=130, format=PIXELS,
                                             show_label=True, elem_id="scrub-image", scale=1)
                r_plot = gr.LinePlot(x="iteration", y="MSE vs purified", title="regeneration: error against iteration",
                                     label="regeneration: error against iteration", show_label=False, scale=2,
                                     height=230, elem_id="regen-plot")
            with gr.Row():
                notes = gr.Markdown()
                warnings = gr.Markdown()
                timings = gr.Markdown()
            with gr.Accordion("this run as one picture, for slides (download)", open=False):
                picture = gr.Image(show_label=False, interactive=False, format=PIXELS, buttons=["download"],
                                   elem_id="picture")
        with gr.Tab("Compare defenses"):
            gr.Markdown(COMPARE_INTRO)
            with gr.Row():
                with gr.Column(scale=3, min_width=420):
                    cmp_gallery = gr.Gallery(value=gallery_items(first), label="pick an image", columns=7, rows=3,
                                             height="auto", allow_preview=False, object_fit="contain",
                                             elem_id="cmp-examples")
                with gr.Column(scale=2, min_width=360):
                    with gr.Row():
                        with gr.Column(min_width=160):
                            cmp_file = gr.File(label="…or upload an image", file_types=["image"], type="filepath",
                                               height=90)
                            cmp_seen = gr.Image(label="the image", interactive=False, height=110, width=110, format=PIXELS)
                        with gr.Column():
                            cmp_attack = gr.Dropdown(list(ATTACK_LABELS), value="PGD", label="attack")
                            cmp_eps = gr.Slider(0, MAX_EPS, value=round(8 / 255, 4), step=1 / 255, label="epsilon")
                    with gr.Row():
                        cmp_steps = gr.Slider(1, 50, value=10, step=1, label="attack steps")
                        cmp_seed = gr.Number(value=0, precision=0, label="seed")
                    cmp_run = gr.Button("Compare", variant="primary", elem_id="compare")
            cmp_note = gr.Markdown(elem_id="compare-note")
            cmp_summary = gr.Markdown(elem_id="compare-summary")
            cmp_plot = gr.Plot(label="each defense, attacked by each attacker", elem_id="compare-plot", format=PIXELS)
            cmp_table = gr.Markdown()
            cmp_json = gr.JSON(visible=False)
        with gr.Tab("Lesson"):
            gr.Markdown(LESSON_INTRO)
            with gr.Row():
                lesson_buttons = [gr.Button(step.title, elem_id=f"lesson-{i + 1}") for i, step in enumerate(STEPS)]
            l_text = gr.Markdown(elem_id="lesson-text")
            l_summary = gr.Markdown(elem_id="lesson-summary")
            l_plot = gr.Plot(label="this step, live", format=PIXELS)
            l_table = gr.Markdown()
        with gr.Tab("Robustness curves"):
            c_intro = gr.Markdown(curves_intro(defense))
            c_attack = gr.Dropdown(["FGSM", "PGD"], value="PGD", label="attack")
            c_plot = gr.Plot(label="from the evaluation results")
            c_note = gr.Markdown()
            with gr.Row():
                c_n = gr.Slider(4, 20, value=10, step=1, label="images for a live measurement")
                c_run = gr.Button("Measure live on a small batch")
            c_live = gr.Plot(label="measured live")
        with gr.Tab("How it works"):
            how_plot = gr.Plot(value=pipeline_figure(defense.config.gate), label="the pipeline")
            how = gr.Markdown(how_text(defense))

        components = {"original": o_img, "original_top3": o_lab, "perturbation": p_img, "perturbation_text": p_txt,
                      "adversarial": a_img, "adversarial_top3": a_lab, "detector_verdict": d_lab, "detector_text": d_txt,
                      "purified": u_img, "purified_top3": u_lab, "regenerated": r_img, "regenerated_text": r_txt,
                      "frames": frames, "final": f_img, "final_top3": f_lab, "verdict": verdict, "notes": notes,
                      "warnings": warnings, "timings": timings, "final_text": f_txt, "regeneration_plot": r_plot,
                      "picture": picture}
        outputs = [components[k] for k in OUTPUTS]   # KeyError here if the two ever disagree
        gallery.select(pick_example, dataset, file, api_name=False)
        file.change(preview, [file, dataset], [seen, prep_note], api_name=False)
        switched = [head, gallery, file, seen, prep_note, restarts, iterations, how_plot, how, c_plot, c_note, c_intro,
                    c_live, read]
        # .input: the visitor's own choice (a link sets the data set together with what depends on it)
        compare_outputs = [cmp_gallery, cmp_file, cmp_summary, cmp_plot, cmp_table]
        dataset.input(switch, dataset, switched, api_name=False).then(
            reset_compare, dataset, compare_outputs, api_name=False).then(
            lambda: None, None, camera, api_name=False)
        for control in (eps, attack, steps):
            control.change(attack_settings, [attack, eps, steps], [eps, eps_note], api_name=False,
                           show_progress="hidden")
        run.click(None, None, None, js="() => setTimeout(() => document.getElementById('verdict')"
                                       ".scrollIntoView({behavior: 'smooth', block: 'start'}), 300)")
        settings = [file, attack, eps, steps, threat, restarts, iterations, seed, dataset, read]
        # settings are checked first, in an event without outputs: a bad one is one message and leaves the
        # panels as they were (an error inside `defend` would mark all of them); /defend checks them again
        checked = run.click(check_settings, settings, None, api_name=False, show_progress="hidden")
        # every visitor's run enters at once: the RunPool queues them for its workers (and shares identical
        # ones), so a visitor waiting for a worker sees a place in line and no event holds a compute slot idle
        running = checked.success(defend, settings, outputs, api_name="defend", concurrency_limit=serve.queue_size)
        stop.click(stop_run, dataset, verdict, cancels=[running], api_name="stop", queue=False)
        share.click(share_link, [file, attack, eps, steps, threat, seed, dataset], link, api_name=False).success(
            None, link, link, js="(q) => q && q.startsWith('?') ? location.origin + location.pathname + q : q")
        autorun = gr.Checkbox(False, visible="hidden", elem_id="autorun")   # in the page: the js below reads it
        demo.load(open_link, None, [dataset, *switched, attack, eps, steps, threat, seed, autorun],
                  api_name=False).then(reset_compare, dataset, compare_outputs, api_name=False).then(None, autorun, None,
                                       js="(go) => { if (go) setTimeout(() => document.getElementById('run').click(), 300); }")
        running.then(scrubber, frames, [scrub, scrub_img], api_name=False)
        scrub.change(scrub_to, [scrub, frames], scrub_img, api_name=False, show_progress="hidden")
        # a webcam or clipboard photo becomes the run's input exactly as an uploaded file does
        camera.change(use_photo, camera, file, api_name="use_photo", show_progress="hidden")
        cmp_gallery.select(pick_example, dataset, cmp_file, api_name=False)
        cmp_file.change(preview, [cmp_file, dataset], [cmp_seen, cmp_note], api_name=False)
        cmp_run.click(compare_defenses, [cmp_file, cmp_attack, cmp_eps, cmp_steps, cmp_seed, dataset],
                      [cmp_summary, cmp_plot, cmp_table, cmp_json], api_name="compare",
                      concurrency_limit=serve.concurrency, concurrency_id="compute")
        for i, b in enumerate(lesson_buttons):
            b.click(functools.partial(lesson_step, i), dataset, [l_text, l_summary, l_plot, l_table],
                    api_name=f"lesson_{i + 1}", concurrency_limit=serve.concurrency, concurrency_id="compute")
        c_attack.change(saved_curves, [c_attack, dataset], [c_plot, c_note], api_name=False)
        demo.load(saved_curves, [c_attack, dataset], [c_plot, c_note], api_name=False)
        c_run.click(live_curves, [c_attack, c_n, dataset], c_live, api_name="curves",
                    concurrency_limit=serve.curves_concurrency)
    demo.handlers = handlers  # for tests and benchmarks: handler.active counts runs in progress
    demo.pool = pool          # the worker processes (closed by main's caller or at exit)
    demo.handler = handlers[first]
    return demo


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)   # not one line per internal request
    serve = ServeConfig.from_env()
    torch.set_num_threads(serve.threads)
    defenses = load_defenses(os.environ.get("ISM_WEIGHTS") or None, os.environ.get("ISM_REVISION") or None)
    print(f"ism-defense: serving {', '.join(defenses)}; {serve}")
    for line in startup_report(defenses):
        print("  " + line)
    demo = build_demo(defenses, serve=serve)
    demo.queue(default_concurrency_limit=serve.concurrency, max_size=serve.queue_size)
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"), show_error=False, css=CSS,
                max_threads=serve.queue_size + 16)   # every waiting visitor's stream holds a thread


if __name__ == "__main__":
    main()
