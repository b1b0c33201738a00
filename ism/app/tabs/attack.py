"""The "Attack & defend" tab: pick or upload a picture, attack it, and watch the defense detect, purify and
regenerate it, stage by stage. Its settings widgets are named after ``RunRequest``'s fields and collected into
one request; its outputs are updated by name (``OUTPUTS``)."""
from __future__ import annotations

import inspect

import gradio as gr

from ism.app.defenses import default_eps
from ism.app.links import share_query
from ism.app.render import ITERATION_TICKS, OUTPUTS, state_values
from ism.app.request import (
    MAX_EPS,
    MAX_ITERATIONS,
    MAX_RESTARTS,
    MAX_SEED,
    READS,
    THREAT_DETAILS,
    THREATS,
    RunRequest,
)
from ism.app.tabs.page import (
    ATTACK_LABELS,
    END_PLAYBACK,
    PIXELS,
    ApiSetting,
    Page,
    Setting,
    panel_title,
    reading,
    stage_image,
)
from ism.attacks.standard import LABELS, MAX_SQUARE_QUERIES, MAX_STEPS, TABLE, attack

PRIVACY = ("🔒 Your picture is used for your runs only: it is not logged, not shared with other visitors and "
           "not kept. The server deletes uploaded files and results after 10 minutes.")
STOPPED = "### ■ Stopped. Press **Run** to start again."   # (⏹ draws as an empty box in Chromium)
READY = "*Pick an example and press Run (the first one is picked for you).*"
OWN = ("eps", "restarts", "iterations", "read")   # settings each defense has its own default for (faces: 16/255):
                                                 # a /defend call that leaves one out (None) gets the defense's own
PANELS = {   # output name -> (panel title, what it shows, in one line)
    "original": ("1 The picture", "what the classifier reads before any attack"),
    "perturbation": ("2 The attack's change", "its pattern, made strong enough to see"),
    "adversarial": ("3 The attacked picture", "what the attacker's target reads on it"),
    "detector": ("4 The detector", "attacked or clean? It reads what the ISM removed"),
    "purified": ("5 Purified by the ISM", "its answer to the attack; below, its change"),
    "regenerated": ("6 Redrawn by the GAN", "a generator redraws panel 5, step by step"),   # (or, for a strong
                                                                                          # attack, the blur: said)
    "final": ("7 The defense's answer", "what the classifier reads in the end"),
}


def defense_of(values) -> str | None:
    """The defense named by the settings ``values`` (``RunRequest``'s fields in order), or None if left out."""
    at = RunRequest.names().index("defense")
    return values[at] if len(values) > at else None


def play_regeneration(seconds: float) -> str:
    """The page's own playback of a finished run's regeneration: panel 6 shows every frame of the frames
    gallery in turn over ``seconds``, ending on the last, with the iteration under it. The server sends the
    frames once, in the final update; a class on one example then costs it one stream each, whatever the
    number of frames (issue "the default serves a class")."""
    return """(frames) => {
    const list = (frames || []).map(f => (f && (f.image || f[0])) || null).map(i => i && (i.url || i.path || i))
                               .filter(u => typeof u === 'string');
    const box = document.querySelector('#regen-live');
    const token = (window.__regenPlay = (window.__regenPlay || 0) + 1);
    let label = box && box.querySelector('.regen-step');
    if (label) label.textContent = '';
    if (!box || list.length < 2 || !(%(ms)s > 0)) return;
    if (!label) { label = document.createElement('div'); label.className = 'regen-step'; box.appendChild(label); }
    const gap = %(ms)s / (list.length - 1);
    list.forEach((url, i) => setTimeout(() => {
        const img = box.querySelector('img');
        if (!img || token !== window.__regenPlay) return;
        img.src = url;
        label.textContent = i === list.length - 1 ? '' : 'redrawing: iteration ' + i + ' of ' + (list.length - 1);
    }, i * gap));
}""" % {"ms": round(max(0.0, float(seconds)) * 1000)}


def limits_text(max_seconds: float | None) -> str:
    """This server's ceilings on one run, in words (shown beside the settings)."""
    cap = f"; a run stops regenerating after {max_seconds:g} s" if max_seconds else ""
    return (f"Limits per run on this server, so that every visitor gets a turn: Square at most "
            f"{MAX_SQUARE_QUERIES:,} queries; regeneration at most {MAX_RESTARTS} restarts × {MAX_ITERATIONS} iterations{cap}.")


def threat_help() -> str:
    """The threat models in plain words; how the adaptive attacker does it, folded."""
    how = "".join(f"\n\n<details><summary>how the {k} attacker does it</summary>\n\n{v}.\n\n</details>"
                  for k, v in THREAT_DETAILS.items())
    return "\n".join(f"- **{k}**: {v}" for k, v in THREATS.items()) + how


def read_label(defense) -> str:
    """The read choice matching the defense's own (config.final_input)."""
    return next((k for k, v in READS.items() if v == defense.config.final_input), None)


class AttackTab:
    """Lays out the tab (in the caller's ``gr.Blocks``), then ``wire()`` connects its events."""

    def __init__(self, page: Page):
        self.page = page
        d = page.defense(page.first)
        self.c: dict[str, gr.components.Component] = {}    # every widget the handlers name
        c = self.c
        with gr.Tab("Attack & defend"):
            with gr.Row():
                with gr.Column(scale=3, min_width=520):
                    c["gallery"] = page.examples_gallery("examples", selected=0)   # the first is picked
                    first = page.first_example(page.first)
                    seen, note = page.preview(first, page.first)
                    with gr.Accordion("…or your own image: upload a file, take a webcam photo or paste one",
                                      open=False):
                        with gr.Row():
                            c["file"] = gr.File(first, label=page.upload_label(page.first), file_types=["image"],
                                                type="filepath", height=150, elem_id="own-image")
                            c["camera"] = gr.Image(label="webcam photo, or paste (Ctrl+V)",
                                                   sources=["webcam", "clipboard"], type="filepath", format="png",
                                                   height=250, elem_id="camera")   # ("Click to Access Webcam" fits)
                            c["seen"] = gr.Image(seen, label="what the model sees", interactive=False, height=130,
                                                 width=130, format=PIXELS)
                        gr.Markdown(PRIVACY)
                    c["prep_note"] = gr.Markdown(note, elem_id="prep-note")
                    c["story_note"] = gr.Markdown(page.story_note(page.first), elem_id="story-note")
                with gr.Column(scale=2, min_width=360):
                    self._settings(d)
            c["verdict"] = gr.Markdown(READY, elem_id="verdict")
            self._panels()
            self._regeneration()
            with gr.Row():
                c["notes"], c["warnings"] = gr.Markdown(), gr.Markdown()
            with gr.Accordion("how long each step took", open=False):
                c["timings"] = gr.Markdown()
            with gr.Accordion("this run as one picture, for slides (download)", open=False):
                c["picture"] = gr.Image(show_label=False, interactive=False, format=PIXELS, buttons=["download"],
                                        elem_id="picture")
            # a link's run=1 (see app.py); inside the tab: a widget between two tabs splits them into two tab bars
            c["autorun"] = gr.Checkbox(False, visible="hidden", elem_id="autorun")

    def _settings(self, d) -> None:
        c = self.c
        with gr.Row():
            c["attack"] = gr.Dropdown(ATTACK_LABELS, value=TABLE["pgd"].label, label="attack", min_width=150)
            c["threat"] = gr.Radio(list(THREATS), value="gray-box", label="the attacker knows", min_width=200,
                                   info="gray-box: the classifier only; adaptive: the whole defense")
        c["eps"] = Setting(0, MAX_EPS, value=round(default_eps(d), 4), step=1 / 255, label="epsilon (attack strength)")
        c["eps_note"] = gr.Markdown(TABLE["pgd"].note(default_eps(d), TABLE["pgd"].steps), elem_id="eps-note")
        with gr.Row():
            c["run"] = gr.Button("Run", variant="primary", elem_id="run")
            c["stop"] = gr.Button("Stop", variant="stop")
        with gr.Accordion("more settings", open=False):
            c["steps"] = Setting(1, MAX_STEPS, value=TABLE["pgd"].steps, step=1, label="attack steps (iterative attacks)")
            c["read"] = gr.Radio(list(READS), value=read_label(d), label="the classifier reads",
                                 info="for an input the defense treats as attacked; the default is what "
                                      "this defense was trained to read")
            with gr.Row():
                c["restarts"] = Setting(1, MAX_RESTARTS, value=d.config.regen_restarts, step=1,
                                        label="regeneration restarts")
                c["iterations"] = Setting(0, MAX_ITERATIONS, value=d.config.regen_steps, step=1,
                                          label="regeneration iterations")
            c["seed"] = gr.Number(value=0, precision=0, label=f"seed (0 to {MAX_SEED})")
            gr.Markdown(limits_text(self.page.serve.max_seconds), elem_id="limits")
            gr.Markdown(threat_help())
        # The /defend API's inputs for the settings each defense has its own default for: hidden, and empty, because
        # gradio_client fills an omitted argument with its input's start value, and the page's widgets start at the
        # first defense's (an API call on faces without a strength would be attacked at CIFAR-10's 8/255, not 16/255)
        for name in OWN:
            if name == "read":
                c["api_read"] = gr.Textbox(None, visible=False, label=name)
            else:
                shown = c[name]       # the page's slider: its label and range
                c[f"api_{name}"] = ApiSetting(None, visible=False, label=shown.label, minimum=shown.minimum,
                                              maximum=shown.maximum, precision=None if name == "eps" else 0)
        c["api"] = gr.Button(visible=False)
        with gr.Row():
            c["share"] = gr.Button("Link to this run", variant="secondary", elem_id="share")
            c["link"] = gr.Textbox(show_label=False, placeholder="the link appears here "
                                   "(examples only)", interactive=False, buttons=["copy"], elem_id="share-link",
                                   min_width=200, scale=3)

    def _panels(self) -> None:
        c = self.c
        with gr.Row(equal_height=False, elem_id="stages"):   # each panel from the top: images on one line
            with gr.Column(min_width=120):
                c["original"] = stage_image(*PANELS["original"])
                c["original_top3"] = reading()
            with gr.Column(min_width=120):
                c["perturbation"] = stage_image(*PANELS["perturbation"])
                c["perturbation_text"] = gr.Markdown()
            with gr.Column(min_width=120):
                c["adversarial"] = stage_image(*PANELS["adversarial"])
                c["adversarial_top3"] = reading()
            with gr.Column(min_width=120):
                panel_title(*PANELS["detector"])
                c["detector_verdict"] = gr.Label(label="the detector's verdict", show_label=False)
                c["detector_text"] = gr.Markdown()
            with gr.Column(min_width=120):
                c["purified"] = stage_image(*PANELS["purified"])
                c["purified_top3"] = reading()
                c["counter"] = gr.Image(label="the ISM's change", show_label=False, interactive=False, height=110,
                                        format=PIXELS, elem_id="counter", buttons=[])
                c["counter_text"] = gr.Markdown(elem_id="counter-text")
            with gr.Column(min_width=120):
                c["regenerated"] = stage_image(*PANELS["regenerated"], elem_id="regen-live")
                c["regenerated_text"] = gr.Markdown()
            with gr.Column(min_width=120):
                c["final"] = stage_image(*PANELS["final"])
                c["final_top3"] = reading()                  # the answer first, then why
                c["final_text"] = gr.Markdown(elem_id="final-text")

    def _regeneration(self) -> None:
        c = self.c
        with gr.Row():
            with gr.Column(scale=3):
                c["frames"] = gr.Gallery(label="every regeneration iteration and what the classifier reads on it "
                                         "(browse after the run)", columns=6, format=PIXELS, height=190,
                                         object_fit="contain", elem_id="frames", interactive=False)
                with gr.Row():
                    c["scrub"] = gr.Slider(0, 1, value=0, step=1, label="scrub through the regeneration: iteration",
                                           interactive=False, elem_id="scrub", scale=3)
                    c["scrub_image"] = gr.Image(label="that iteration", interactive=False, height=130, width=130,
                                                format=PIXELS, show_label=True, elem_id="scrub-image", scale=1)
            c["regeneration_plot"] = gr.LinePlot(x="iteration", y="difference from panel 5 (mean squared)",
                                                 y_title="difference from panel 5", x_title="iteration",
                                                 label="redrawing: how far from the purified picture (panel 5)",
                                                 show_label=True,
                                                 sort=ITERATION_TICKS, scale=2, height=230, elem_id="regen-plot")

    # --- handlers ------------------------------------------------------------------------------------
    @property
    def settings(self) -> list:
        """The widgets of ``RunRequest``'s fields, in its order (the page's Run; the /defend API's are
        ``api_settings``)."""
        return [self.page.choice if n == "defense" else self.c[n] for n in RunRequest.names()]

    @property
    def api_settings(self) -> list:
        """The /defend endpoint's inputs: ``settings``, with the empty hidden inputs of ``OWN``'s settings."""
        return [self.c[f"api_{n}"] if n in OWN else w for n, w in zip(RunRequest.names(), self.settings)]

    def request(self, values):
        """(the request the widgets' ``values`` ask for, the page's handler for its defense). The defense and
        ``OWN``'s settings may be left out (None, as an API call may: the page's first defense, the defense's own
        strength, regeneration and reading); a bad value is one ``UserError`` sentence."""
        given = dict(zip(RunRequest.names(), values))
        handler = self.page.handler_for(given.pop("defense", None) or self.page.first)
        return handler.request(**given), handler

    def _endpoint(self, work):
        """``work(values, request)`` as a gradio function whose parameters are ``RunRequest``'s fields (the
        API's argument names) and a gr.Request (gradio fills it only in a signature without ``*args``)."""
        def endpoint(*args):
            values, request = (args[:-1], args[-1]) if args and isinstance(args[-1], gr.Request) else (args, None)
            return (yield from work(values, request))

        # None is the default of every field after the picture (a signature's defaults are a tail); it is what the
        # API's caller gets only for an input that starts empty (``OWN``'s hidden ones): gradio_client takes the others'
        # defaults from their widgets' start values
        endpoint.__signature__ = inspect.Signature(
            [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, **({"default": None} if i else {}))
             for i, n in enumerate(RunRequest.names())]
            + [inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None,
                                 annotation=gr.Request)])
        endpoint.__annotations__ = {"request": gr.Request}    # (gradio reads the type hints, not the signature's)
        endpoint.__name__ = work.__name__
        return endpoint

    def defend(self, values, request: gr.Request = None):
        """The /defend endpoint (``_endpoint``): a run, streamed. An API call may leave out the defense (the page's
        first) and what the classifier reads (the defense's own choice); a strength or regeneration setting sent as
        None is the defense's own (``RunRequest.for_defense``)."""
        with self.page.one_message(defense_of(values) or self.page.first):
            req, handler = self.request(values)
            for state, picture, label in handler.run(req, session=getattr(request, "session_hash", None)):
                # every update names every output, and gradio sends the page only what changed since the last
                # one (its stream is a diff per output); marking unchanged outputs gr.skip() instead costs more
                # (gradio 6.31 rebuilds each skipped component: 30 different runs at once took 14.3 s of the
                # server's CPU against 12.0, docs/app.md). Each picture is a file encoded once (stage_file).
                yield {self.c[k]: v for k, v in state_values(state, picture, label).items()}

    def check_settings(self, *values):
        with self.page.one_message(defense_of(values)):
            req, handler = self.request(values)
            handler.prepare(req.file)

    def leave(self, request: gr.Request = None) -> None:
        """Leave this visitor's run (cancelled unless another visitor follows it); a run still waiting in
        gradio's queue is cancelled by the event that calls this."""
        session = getattr(request, "session_hash", None)
        for h in self.page.handlers.values():
            h.stop(session)

    def stop_run(self, key, request: gr.Request = None):
        """Stop: leave this visitor's run and say so."""
        self.leave(request)
        return STOPPED

    def share_link(self, *values):
        with self.page.one_message(defense_of(values)):
            req, handler = self.request(values)
            return share_query(handler, req)

    @staticmethod
    def attack_settings(name, eps, steps):
        """Epsilon applies to every attack but CW and DeepFool (L2, minimal perturbation): say so."""
        spec = attack(name)
        return gr.update(interactive=spec.uses_eps), spec.note(eps, steps)

    @staticmethod
    def attack_steps_default(name):
        """Picking an attack sets its steps to ones that find a perturbation on the shipped defenses (CW's
        10 Adam steps found none on any gallery example)."""
        return attack(name).steps

    @staticmethod
    def scrubber(frames):
        """After a run: the slider spans every regeneration iteration and shows the last."""
        n = len(frames or [])
        if not n:
            return gr.update(value=0, maximum=1, interactive=False), None
        return gr.update(value=n - 1, maximum=n - 1, interactive=True), frames[-1][0]

    @staticmethod
    def scrub_to(i, frames):
        frames = frames or []
        return frames[min(int(i), len(frames) - 1)][0] if frames else None

    def switch(self, key) -> dict:
        """What changes with the data set and defense: examples, upload, defaults."""
        d, c, page = self.page.defense(key), self.c, self.page
        first = page.first_example(key)            # picked for the visitor: Run before picking runs it
        seen, note = page.preview(first, key)
        cleared = {c[k]: None for k in OUTPUTS if k not in ("frames", "verdict")}   # nothing of the last run stays
        return {**cleared, c["verdict"]: READY, c["frames"]: [], c["link"]: "",
                c["scrub"]: gr.update(value=0, maximum=1, interactive=False), c["scrub_image"]: None,
                c["gallery"]: gr.update(value=page.gallery_items(key), label=page.gallery_label(key), selected_index=0),
                c["file"]: gr.update(value=first, label=page.upload_label(key)), c["seen"]: seen, c["prep_note"]: note,
                c["camera"]: None, c["restarts"]: d.config.regen_restarts, c["iterations"]: d.config.regen_steps,
                c["read"]: read_label(d), c["eps"]: round(default_eps(d), 4), c["story_note"]: page.story_note(key)}

    def show(self, req: RunRequest) -> dict:
        """Every settings widget showing ``req`` (a link's request, on its defense's defaults), by field name."""
        labels = {**{v: k for k, v in LABELS.items()}, **{v: k for k, v in READS.items()}}
        out = {}
        for name, value in req.computed().items():
            if name == "defense":
                continue
            out[self.c[name]] = labels.get(value, value) if name in ("attack", "read") else value
        if req.read is None:
            out[self.c["read"]] = read_label(self.page.defense(req.defense))
        if req.file:
            out[self.c["file"]] = gr.update(value=req.file, label=self.page.upload_label(req.defense))
        return out

    @property
    def shown(self) -> list:
        """The widgets ``show`` sets."""
        return [self.c[n] for n in RunRequest.names() if n != "defense"]

    def wire(self) -> None:
        c, page, serve = self.c, self.page, self.page.serve
        outputs = [c[k] for k in OUTPUTS]
        c["gallery"].select(page.pick_example, page.choice, c["file"], api_name=False)
        c["file"].change(page.preview, [c["file"], page.choice], [c["seen"], c["prep_note"]], api_name=False)
        c["attack"].input(self.attack_steps_default, c["attack"], c["steps"], api_name=False, show_progress="hidden")
        for control in ("eps", "attack", "steps"):
            c[control].change(self.attack_settings, [c["attack"], c["eps"], c["steps"]], [c["eps"], c["eps_note"]],
                              api_name=False, show_progress="hidden")
        # settings are checked first, in an event without outputs: a bad one is one message and leaves the
        # panels as they were (an error inside `defend` would mark all of them); /defend checks them again
        checked = c["run"].click(self.check_settings, self.settings, None, api_name=False, show_progress="hidden")
        checked.success(None, None, None, js=f"() => {{ {END_PLAYBACK} setTimeout(() => document.getElementById("
                                             "'verdict').scrollIntoView({behavior: 'smooth', block: 'start'}), 300); }")
        # every visitor's run enters at once: the RunPool queues them for its workers (and shares identical
        # ones), so a visitor waiting for a worker sees a place in line and no event holds a compute slot idle
        running = checked.success(self._endpoint(self.defend), self.settings, outputs, api_name=False,
                                  concurrency_limit=serve.queue_size, concurrency_id="defend")
        # the same run for API callers (a button nobody sees): a setting left out is the defense's own
        served = c["api"].click(self._endpoint(self.defend), self.api_settings, outputs, api_name="defend",
                                concurrency_limit=serve.queue_size, concurrency_id="defend")
        page.runs += [checked, running]     # (a check cancelled by a switch starts no run)
        c["stop"].click(self.stop_run, page.choice, c["verdict"], cancels=[running, served], api_name="stop",
                        queue=False)
        c["share"].click(self.share_link, self.settings, c["link"], api_name=False).success(
            None, c["link"], c["link"], js="(q) => q && q.startsWith('?') ? location.origin + location.pathname + q : q")
        running.then(self.scrubber, c["frames"], [c["scrub"], c["scrub_image"]], api_name=False)
        running.success(None, c["frames"], None, js=play_regeneration(serve.playback))
        c["scrub"].change(self.scrub_to, [c["scrub"], c["frames"]], c["scrub_image"], api_name=False,
                          show_progress="hidden")
        # a webcam or clipboard photo becomes the run's input exactly as an uploaded file does
        c["camera"].change(lambda path: path if path else gr.skip(), c["camera"], c["file"], api_name="use_photo",
                           show_progress="hidden")
