"""What every tab shares: the served defenses with their handlers, the data-set-and-defense choice, and the
small widgets and words more than one tab uses."""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from unittest import mock

import gradio as gr
from gradio import component_meta

from ism.app.defenses import default_eps, defense_title
from ism.app.handlers import CompareHandler, DemoHandler
from ism.app.live import CAUGHT, adaptive_summary
from ism.app.request import UserError
from ism.app.serve import ServeConfig
from ism.attacks.standard import LABELS, attack
from ism.data.examples import rule as example_rule
from ism.data.images import to_display
from ism.eval.curves import load_results, results_path, story_examples

log = logging.getLogger("ism-defense")
ATTACK_LABELS = list(LABELS)   # the attack dropdowns' choices, in the attacks table's order

# Images (and figures holding images) are sent as PNG: lossless, so the attacked pixels a visitor sees or
# downloads are the attack's own (gradio's default, WebP, is lossy: quality 80), and quicker to encode
# (a 128-pixel stage image: 1.1 ms against 2.4 ms).
PIXELS = "png"

CSS = Path(__file__).with_name("page.css").read_text()   # the page's own styles

# Switching the data set empties every gallery's highlight: gradio 6 keeps the clicked thumbnail highlighted on
# the new examples although the update sets selected_index=None (a -1 or an emptied gallery selects the first)
# ... and then clicking the thumbnail at the same place would light nothing (gradio thinks it is still selected):
# the page marks the clicked example itself (run once when the page loads: launch(js=JS))
JS = """() => document.addEventListener('click', (e) => {
    const item = e.target.closest('#examples .thumbnail-item, #cmp-examples .thumbnail-item');
    if (!item) return;
    item.closest('.grid-container').querySelectorAll('.thumbnail-item.selected').forEach(x => x.classList.remove('selected'));
    item.classList.add('selected');
}, true)"""


def result_plot(figure) -> dict:
    """A plot's update: shown with a result's figure, hidden without one (not an empty box before a result).
    (An update, not a ``gr.Plot``: a component made while the page is built, as the tabs' ``switch`` is, is
    placed on the page, after everything else.)"""
    return gr.update(value=figure, visible=figure is not None)


def theme() -> gr.themes.Base:
    """gradio's default theme with its font's bold from the complete file: gradio 6.31 ships Source Sans Pro
    SemiBold (its headings' weight, 600) as a 5 KB subset of a few letters, so every heading mixed those with a
    fallback font (a small capital "A" in "ATTACKED", "GAN", "A lesson"). With weights 400 and 700 served, the
    browser draws 600 from the full Bold file."""
    return gr.themes.Default(font=[gr.themes.LocalFont("Source Sans Pro", weights=(400, 700)), "ui-sans-serif",
                                   "system-ui", "sans-serif"],
                             font_mono=[gr.themes.LocalFont("IBM Plex Mono", weights=(400, 700)), "ui-monospace",
                                        "Consolas", "monospace"])   # (its SemiBold is such a subset too)


# Ends a regeneration playing back in panel 6 (ism/app/tabs/attack.py: play_regeneration): its pending frames see
# a new token and stop, and its step counter is emptied. A new run and a switch of data set run it.
END_PLAYBACK = ("window.__regenPlay = (window.__regenPlay || 0) + 1; "
                "document.querySelectorAll('#regen-live .regen-step').forEach(e => { e.textContent = ''; });")
CLEAR_SELECTION = ("(key) => { document.querySelectorAll('.thumbnail-item.selected')"
                   f".forEach(e => e.classList.remove('selected')); {END_PLAYBACK} return key; }}")


# gradio writes a stub file (.pyi) beside the source of every component subclass it sees defined, into the source
# tree (ism/app/tabs/page.pyi); the page's one subclass is defined with that step switched off. (A per-instance
# check instead of a subclass is lost: gradio rebuilds a visitor's components from their class.)
with mock.patch.object(component_meta, "create_or_modify_pyi", lambda *args, **kwargs: None):
    class Setting(gr.Slider):
        """A slider whose value typed out of range is one plain sentence naming the setting (gradio's own is
        "Value 1 is greater than maximum value 0.4" under the title "Error")."""
        is_template = True      # drawn by gradio's slider

        def preprocess(self, payload):
            out_of_range(self.label, self.minimum, self.maximum, payload, "Move the slider or type a value inside it.")
            return super().preprocess(payload)

    class ApiSetting(gr.Number):
        """The /defend API's input for a setting each defense has its own default for (ism/app/tabs/attack.py:
        ``OWN``): hidden, empty (None: the defense's own), and a value out of range is the page's sentence."""
        is_template = True      # drawn by gradio's number (never shown)

        def preprocess(self, payload):
            out_of_range(self.label, self.minimum, self.maximum, payload, "Send a value inside it.")
            return super().preprocess(payload)


def out_of_range(label, minimum, maximum, payload, hint: str) -> None:
    """One plain sentence naming the setting when ``payload`` lies outside [minimum, maximum]."""
    if payload is not None and not (minimum <= payload <= maximum):
        raise gr.Error(f"The {label} goes from {minimum:g} to {maximum:g}; {payload:g} is outside that range. {hint}",
                       title="Cannot run this")


def attack_name(label: str) -> str:
    """The internal attack name for a dropdown label ("PGD" -> "pgd"); an internal name passes through."""
    return attack(label).name


def panel_title(title: str, caption: str = "") -> gr.Markdown:
    """A stage panel's title in bold, with what it shows in one line under it (the same height in every
    panel, so the images line up)."""
    return gr.Markdown(f"**{title}**<br><small>{caption}</small>", elem_classes="panel-title")


def stage_image(title: str, caption: str = "", **kw) -> gr.Image:
    """One stage panel of the demo: its title and caption over its image."""
    panel_title(title, caption)
    return gr.Image(label=title, show_label=False, interactive=False, height=140, format=PIXELS, **kw)


def reading() -> gr.Label:
    """A panel's top-3 reading (styled by ``.top3`` to fit narrow panels)."""
    return gr.Label(num_top_classes=3, show_label=False, elem_classes="top3")


class Page:
    """The served defenses, keyed by folder name (``cifar10-paper``, ``cifar10``, ...), one ``DemoHandler`` and
    one ``CompareHandler`` each, and the radio that chooses among them (``choice``, set by app.py). ``pool``: the
    RunPool that computes the demo's runs (app.py starts it); None: each run is computed in the server's thread."""

    def __init__(self, defenses: dict, serve: ServeConfig, results_dir: str = "results", pool=None):
        self.serve, self.results_dir, self.pool = serve, results_dir, pool
        self.handlers = {name: DemoHandler(d, name, max_seconds=serve.max_seconds,
                                           pool=pool) for name, d in defenses.items()}
        self.comparers, shared = {}, {}
        served = {d.source: d for d in defenses.values() if getattr(d, "source", None)}
        for name, h in self.handlers.items():   # the defenses of one data set share their contenders (loaded once)
            ds = h.defense.config.dataset
            self.comparers[name] = CompareHandler(h, contenders=shared.get(ds), loaded=served)
            shared.setdefault(ds, self.comparers[name].contenders)
        self.first = next(iter(self.handlers))
        self.choice: gr.Radio | None = None
        self.runs: list = []    # every tab's computing events: switching the data set cancels them (app.py)

    # --- facts about one served defense -----------------------------------------------------------
    def handler_for(self, key) -> DemoHandler:
        if key not in self.handlers:
            raise gr.Error(f"This server has no defense {key!r}; it has {', '.join(self.handlers)}.",
                           title="Cannot run this")
        return self.handlers[key]

    def defense(self, key):
        return self.handler_for(key).defense

    def title(self, key) -> str:
        return defense_title(self.handlers[key].defense) if key in self.handlers else str(key)

    def results_path(self, key: str) -> str:
        """The evaluation's results for ``key`` (ism/eval/curves.py: ``results_path``)."""
        return results_path(self.results_dir, key)

    def gallery_items(self, key) -> list:
        """The examples, each captioned with its class, and a ★ where its run at the page's defaults was measured
        to tell the whole story (``story_examples``); the others are kept, not hidden."""
        story = story_examples(self.results_dir, key, default_eps(self.defense(key))) or set()
        return [(e.path, e.name + (" ★" if Path(e.path).stem in story else "")) for e in self.handlers[key].examples]

    def gallery_label(self, key) -> str:
        return f"Examples (click one): {example_rule(self.defense(key).config.dataset)}"

    def story_note(self, key) -> str:
        """What the gallery's ★ means, under it (where the examples were measured)."""
        story = story_examples(self.results_dir, key, default_eps(self.defense(key)))
        if story is None:
            return ""
        return (f"★ {len(story)} of {len(self.handlers[key].examples)} examples tell the whole story at the default "
                "settings: the attack fools the classifier, the detector catches it and the defense answers right "
                "again (measured: results/story.md). The others show where it does not.")

    def upload_label(self, key) -> str:
        d = self.defense(key)
        crop = "the face is " if d.config.dataset == "celeba" else ""
        return f"upload ({crop}centre-cropped, resized to {d.image_size}x{d.image_size} as in training)"

    def header(self, key) -> str:
        """One plain sentence, then the defense, its default attacker and what was measured, folded."""
        d = self.defense(key)
        eps = default_eps(d)
        change = ("A faint change to a picture, too small to see" if eps <= 8 / 255 else
                  f"A small change to a picture (at this page's {eps * 255:.0f}/255 you can see it if you look closely)")
        return (f"## Watch an adversarial attack being caught and undone\n"
                f"{change}, fools a classifier; the ISM defense (Haque & Kang, 2021) tries to catch it and undo it. "
                "Pick an image and press **Run**.\n\n"
                "<details><summary>This defense, its attacker and what was measured</summary>\n\n"
                f"**Defense:** {self.title(key)}. **Default attacker:** PGD-10 at {eps * 255:.0f}/255, knowing the "
                "classifier but not the defense (gray-box).\n\n"
                + adaptive_summary(load_results(self.results_path(key)),
                                   load_results(self.results_path(f"{key}-{CAUGHT}")), eps)
                + "\n\n</details>")

    # --- shared behaviour -------------------------------------------------------------------------
    @contextlib.contextmanager
    def one_message(self, key):
        """A visitor's mistake is one sentence (no traceback in the log); a real bug is logged in full
        and the page gets a sentence."""
        try:
            yield
        except gr.Error:
            raise
        except UserError as e:
            log.info("user error (%s): %s", key, e)
            raise gr.Error(str(e), title="Cannot run this", print_exception=False) from None
        except Exception as e:
            log.exception("run failed (%s)", key)
            raise gr.Error(f"The server failed on this run ({type(e).__name__}); it was logged. Other settings "
                           "may work.", title="Server error", print_exception=False) from None

    def preview(self, file, key):
        """What the model will see of a picture (cropped, resized), and a note; a bad file is one warning."""
        if not file:
            return None, ""
        try:
            picture = self.handler_for(key).prepare(file)
        except UserError as e:
            gr.Warning(str(e))
            return None, f"❌ {e}"
        example = picture.example
        picked = (f"✓ Picked: {Path(example.path).stem}. Press **Run**." if example else
                  "✓ Your picture is picked. Press **Run**.")
        return to_display(picture.tensor), picked + ("\n\nℹ️ " + picture.notes() if picture.notes() else "")

    def pick_example(self, key, evt: gr.SelectData):
        return self.handler_for(key).examples[evt.index].path

    def first_example(self, key) -> str | None:
        """The picture a visitor's page starts with (and a switch of defense picks): its first example, so that Run
        pressed before picking anything runs it."""
        examples = self.handler_for(key).examples
        return examples[0].path if examples else None

    def examples_gallery(self, elem_id: str, label: str | None = None, selected: int | None = None) -> gr.Gallery:
        return gr.Gallery(value=self.gallery_items(self.first), label=label or self.gallery_label(self.first),
                          columns=7, rows=3, height="auto", allow_preview=False, object_fit="contain", elem_id=elem_id,
                          selected_index=selected)
