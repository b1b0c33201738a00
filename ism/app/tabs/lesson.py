"""The "Lesson" tab: four steps, each a live comparison on the same example with a sentence on what to see."""
from __future__ import annotations

import functools

import gradio as gr

from ism.app.lesson import STEPS
from ism.app.tabs.page import PIXELS, Page, result_plot

INTRO = ("**A lesson in four clicks** (about a minute in class). Press the steps in order; each runs live on "
         "the same example and says what to look for. The sentences above each result are computed from "
         "what actually happened.")


class LessonTab:
    def __init__(self, page: Page):
        self.page = page
        with gr.Tab("Lesson"):
            gr.Markdown(INTRO)
            with gr.Row():
                self.buttons = [gr.Button(step.title, elem_id=f"lesson-{i + 1}") for i, step in enumerate(STEPS)]
            self.text = gr.Markdown(elem_id="lesson-text")
            self.summary = gr.Markdown(elem_id="lesson-summary")
            # shown with a step's result: an empty plot box before the first step says nothing
            self.plot = gr.Plot(label="this step, live", format=PIXELS, visible=False, elem_id="lesson-plot")
            self.table = gr.Markdown(elem_id="lesson-table", elem_classes="result-table")

    def step(self, index, key):
        with self.page.one_message(key):
            self.page.handler_for(key)
            result, text = self.page.comparers[key].lesson(index)
            return text, result.summary, result_plot(result.figure), result.table

    def switch(self, key) -> dict:
        """A new data set or defense: nothing left of the last step (it ran on the other one)."""
        return {self.text: "", self.summary: "", self.plot: result_plot(None), self.table: ""}

    def wire(self) -> None:
        for i, b in enumerate(self.buttons):
            step = b.click(functools.partial(self.step, i), self.page.choice,
                           [self.text, self.summary, self.plot, self.table], api_name=f"lesson_{i + 1}",
                           concurrency_limit=self.page.serve.concurrency, concurrency_id="compute")
            self.page.runs.append(step)
