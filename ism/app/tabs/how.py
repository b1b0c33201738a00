"""The "How it works" tab: the pipeline as a diagram and in a few sentences, true to the served defense."""
from __future__ import annotations

import gradio as gr

from ism.app.diagram import pipeline_figure
from ism.app.tabs.page import Page
from ism.app.ui import how_text


def figure(defense):
    """The pipeline as ``defense`` runs it: whether its detector gates, which picture its classifier reads."""
    return pipeline_figure(defense.config.gate, defense.config.final_input)


class HowTab:
    def __init__(self, page: Page):
        self.page = page
        d = page.defense(page.first)
        with gr.Tab("How it works"):
            self.plot = gr.Plot(value=figure(d), label="the pipeline")
            self.text = gr.Markdown(how_text(d))

    def switch(self, key) -> dict:
        d = self.page.defense(key)
        return {self.plot: figure(d), self.text: how_text(d)}

    def wire(self) -> None:
        pass
