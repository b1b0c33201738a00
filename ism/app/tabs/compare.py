"""The "Compare defenses" tab: one picture, one attack, attacked separately against each defense, by an
attacker who knows only its classifier and by one who attacks that defense itself."""
from __future__ import annotations

import gradio as gr

from ism.app.defenses import default_eps
from ism.app.request import MAX_EPS
from ism.app.tabs.page import ATTACK_LABELS, PIXELS, Page, Setting, result_plot
from ism.attacks.standard import MAX_STEPS, TABLE

INTRO = ("**One image, one attack, attacked separately against each defense.** Each row is a defense; "
         "each is attacked twice: by a *gray-box* attacker who knows only its classifier, and by an "
         "*adaptive white-box* attacker who attacks that defense itself. A defense that holds only against "
         "the first is not robust: that is how MagNet and Defense-GAN were broken (Carlini & Wagner 2017, "
         "Athalye et al. 2018). *Caught* means a defense's detector flagged the attacked picture: the ISM defenses "
         "then clean it and answer, they do not refuse it (only MagNet can reject a picture), so a caught attack can "
         "still fool them.")


class CompareTab:
    def __init__(self, page: Page):
        self.page = page
        with gr.Tab("Compare defenses"):
            gr.Markdown(INTRO)
            with gr.Row():
                with gr.Column(scale=3, min_width=420):
                    self.gallery = page.examples_gallery("cmp-examples", label="pick an image", selected=0)
                    first = page.first_example(page.first)       # picked for the visitor, as on the main tab
                    seen, note = page.preview(first, page.first)
                with gr.Column(scale=2, min_width=360):
                    with gr.Row():       # the settings and the button first: above the fold at 1366x768
                        self.attack = gr.Dropdown(ATTACK_LABELS, value=TABLE["pgd"].label, label="attack")
                        self.eps = Setting(0, MAX_EPS, value=round(8 / 255, 4), step=1 / 255, label="epsilon")
                    with gr.Row():
                        self.steps = Setting(1, MAX_STEPS, value=TABLE["pgd"].steps, step=1, label="attack steps")
                        self.seed = gr.Number(value=0, precision=0, label="seed")
                    self.run = gr.Button("Compare", variant="primary", elem_id="compare")
                    with gr.Row():
                        self.file = gr.File(first, label="…or upload an image", file_types=["image"], type="filepath",
                                            height=90, elem_id="cmp-file")
                        self.seen = gr.Image(seen, label="the image", interactive=False, height=110, width=110,
                                             format=PIXELS)
            self.note = gr.Markdown(note, elem_id="compare-note")
            self.summary = gr.Markdown(elem_id="compare-summary")
            self.plot = gr.Plot(label="each defense, attacked by each attacker", elem_id="compare-plot", format=PIXELS,
                                visible=False)        # shown with a comparison's result, not as an empty box
            self.table = gr.Markdown(elem_id="compare-table", elem_classes="result-table")
            self.json = gr.JSON(visible=False)

    def compare(self, file, attack, eps, steps, seed, key):
        with self.page.one_message(key):
            req = self.page.handler_for(key).request(file=file, attack=attack, eps=eps, steps=steps, seed=seed)
            result = self.page.comparers[key].run(req)
            return result.summary, result_plot(result.figure), result.table, result.api()

    def switch(self, key) -> dict:
        """A new data set: its examples, and nothing left of the last comparison."""
        first = self.page.first_example(key)
        seen, note = self.page.preview(first, key)
        return {self.gallery: gr.update(value=self.page.gallery_items(key), selected_index=0), self.file: first,
                self.seen: seen, self.note: note, self.summary: "", self.plot: result_plot(None), self.table: "",
                self.eps: round(default_eps(self.page.defense(key)), 4)}

    def wire(self) -> None:
        page = self.page
        self.gallery.select(page.pick_example, page.choice, self.file, api_name=False)
        self.file.change(page.preview, [self.file, page.choice], [self.seen, self.note], api_name=False)
        compared = self.run.click(self.compare, [self.file, self.attack, self.eps, self.steps, self.seed, page.choice],
                                  [self.summary, self.plot, self.table, self.json], api_name="compare",
                                  concurrency_limit=page.serve.concurrency, concurrency_id="compute")
        page.runs.append(compared)
