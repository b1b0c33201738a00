"""The "Robustness curves" tab: accuracy against epsilon from the evaluation's results, and measured live."""
from __future__ import annotations

from pathlib import Path

import gradio as gr
import torch

from ism.app.live import measure_curves
from ism.app.tabs.page import Page, attack_name, result_plot
from ism.data.subsets import evenly_spaced
from ism.defense import Defense
from ism.eval.curves import ALONE, curves_from_results, load_results, plot_curves
from ism.eval.report import curves_note
from ism.folders import paper_recipe_folder

LIVE_EPS = [0.0, 4 / 255, 8 / 255, 16 / 255, 0.1, 0.2, 0.3, 0.4]
SPANS = {"0 to 16/255 (this page's strengths)": False, "the whole range (to 0.4, about 100/255)": True}


def curves_intro(defense: Defense) -> str:
    """The Curves tab's first line, true to what was trained for this data set."""
    root = Path(getattr(defense, "source", "") or ".")
    baselines = [n for n, sub in (("MagNet", "magnet"), ("DDSA", "ddsa"))
                 if (root / "baselines" / sub / "model.safetensors").is_file()]
    ds = defense.config.dataset
    beside = [f for f in (paper_recipe_folder(root.parent, ds), root.parent / ds) if f.resolve() != root.resolve()]
    elsewhere = (" (the paper's baselines MagNet and DDSA were trained beside the other defense for this data set, "
                 "not measured in these curves: the Compare tab attacks them)") \
        if any((f / "baselines").is_dir() for f in beside) else \
        " (the paper's baselines MagNet and DDSA were not trained for this data set)"
    others = f", and the paper's baselines {' and '.join(baselines)}, trained here" if baselines else elsewhere
    return (f"How often each is right as the attack grows stronger: the {ALONE} (grey), this defense{others}; "
            "gray-box (solid: the attacker knows the classifier only) and adaptive white-box (dashed: it knows the "
            "whole defense). Strength 0 is no attack.")


class CurvesTab:
    def __init__(self, page: Page):
        self.page = page
        with gr.Tab("Robustness curves"):
            self.intro = gr.Markdown(curves_intro(page.defense(page.first)))
            with gr.Row():
                self.attack = gr.Dropdown(["FGSM", "PGD"], value="PGD", label="attack")
                self.span = gr.Radio(list(SPANS), value=next(iter(SPANS)), label="attack strengths shown",
                                     elem_id="curves-span")
            self.plot = gr.Plot(label="from the evaluation results")
            self.note = gr.Markdown()
            with gr.Row():
                self.n = gr.Slider(4, 20, value=10, step=1, label="images for a live measurement")
                self.run = gr.Button("Measure live on a small batch")
            # shown with a measurement, not as an empty box before one
            self.live = gr.Plot(label="measured live", visible=False, elem_id="curves-live")

    def saved(self, attack, key, span=None):
        path = self.page.results_path(key)
        res = load_results(path)
        if not res:
            d = self.page.defense(key)
            return result_plot(None), (f"No evaluation results yet: run `python -m ism.eval --dataset "
                                       f"{d.config.dataset} --weights {d.source} --name {key}`, or measure live below.")
        n = res.get("clean", {}).get("images", "?")
        figure = plot_curves(curves_from_results(res, attack_name(attack)),
                             f"{attack} on {self.page.title(key)}: accuracy against attack strength ({n} test images)",
                             full=SPANS.get(span, False))
        return result_plot(figure), curves_note(res, path)

    def measure(self, attack, n, key, span=None, progress=gr.Progress()):
        handler = self.page.handler_for(key)
        ex = [handler.examples[i] for i in evenly_spaced(len(handler.examples), int(n))]   # every class
        if not ex:
            raise gr.Error("no example images available")
        x = torch.cat([handler.prepare(e.path).tensor for e in ex])
        y = torch.tensor([e.label for e in ex])
        series = measure_curves(handler.defense, x, y, LIVE_EPS, attack_name(attack), adaptive=True, progress=progress)
        title = (f"{attack} on {self.page.title(key)}, measured live on {len(ex)} example images "
                 f"({len({e.label for e in ex})} classes)")
        return result_plot(plot_curves(series, title, full=SPANS.get(span, False)))

    def switch(self, key) -> dict:
        plot, note = self.saved("PGD", key)
        return {self.plot: plot, self.note: note, self.intro: curves_intro(self.page.defense(key)),
                self.live: result_plot(None), self.attack: "PGD", self.span: next(iter(SPANS))}

    def wire(self) -> None:
        page = self.page
        for control in (self.attack, self.span):
            control.change(self.saved, [self.attack, page.choice, self.span], [self.plot, self.note], api_name=False)
        measuring = self.run.click(self.measure, [self.attack, self.n, page.choice, self.span], self.live, api_name="curves",
                                   concurrency_limit=page.serve.curves_concurrency)
        page.runs.append(measuring)
