"""The "How it works" tab: the pipeline as a diagram and in a few sentences, true to the served defense."""
from __future__ import annotations

import gradio as gr

from ism.app.diagram import pipeline_figure
from ism.app.tabs.page import Page
from ism.defense import Defense
from ism.folders import robust_trained


def how_text(defense: Defense) -> str:
    """The 'how it works' text, true to the loaded defense's configuration."""
    c = defense.config
    gate = ("Inputs judged clean go straight to the classifier; inputs judged attacked are purified."
            if c.gate else
            "Every input is purified: the detector reports, it does not decide. (With a gate, an adaptive "
            "attacker stays just below the detector's threshold and attacks the bare classifier; on held-out "
            "data the ungated pipeline held up better, see `defense.json`.)")
    final = {"purified": "the classifier reads the **ISM output**, because on held-out data it read that better "
                         "than the regenerated image; regeneration is shown so you can watch it work",
             "regenerated": "the classifier reads the **regenerated** image",
             "mean": "the classifier reads the mean of the ISM output and the regenerated image"}[c.final_input]
    source = getattr(defense, "source", None)
    paper_clf = defense.classifier.config.arch == "table1"
    first = ("The classifier was first hardened as the paper says (defensive\n"
             "distillation + adversarial training)." if paper_clf else
             "The classifier is not the paper's Table 1 network but a compute-efficient one (shaped like\n"
             "airbench94) trained with FGSM adversarial training alone, which in the same CPU time reads clean and\n"
             "attacked images far better; the paper's recipe is kept as `weights/cifar10-paper`.")
    if source is not None and robust_trained(source):
        hardened = (f"**How it was hardened.** {first} Against an attacker who differentiates through the ISM that\n"
                    "was not enough, so ISM and classifier were then trained together against PGD that goes through the\n"
                    "ISM (`python -m train robust`), keeping the ISM a reconstruction of its input.")
    else:
        hardened = (f"**How it was hardened.** {first} The ISM was *not* adversarially trained with the\n"
                    "classifier for these weights, so an attacker who differentiates through the ISM breaks it\n"
                    "(see the adaptive white-box setting).")
    detail = defense.ism.config.detail_channels
    squeeze = ("128-number code" if not detail else
               f"128-number code plus a coarse {detail}-channel detail map at a quarter of the resolution")
    rebuilt = "structure survives, much of the attacker's fine pattern does not."
    if getattr(defense.ism.config, "refine_width", 0):
        rebuilt = ("that rebuilt image is blurry, so a **refiner** (a small full-resolution network) then compares\n"
                   "it with the input and takes the attacker's pattern out of the input itself. It was trained on many\n"
                   "attacked images to make the classifier read its output as it reads the clean image, and on clean\n"
                   "images to leave them as they are.")
    bound = getattr(defense.config, "counter_bound", 0.0)
    if bound:
        rebuilt = ("that rebuilt image is blurry, but the blur keeps what the picture shows. So the defense does not\n"
                   "show the blur: it moves the input itself back, by at most "
                   f"{bound * 255:.0f}/255 per pixel, a few small steps\n"
                   "until the classifier reads it as it reads the blurred rebuild (a *counter-change*). Against an\n"
                   "attack those steps mostly run back along the attack, so the purified picture usually ends closer\n"
                   "to the original than the attacked one, and a clean picture the ISM agrees with is not touched.")
    return f"""
**The defense, in a few sentences.** An adversarial attack adds a small, carefully chosen pattern to an
image so that a classifier changes its answer. The **ISM network** squeezes the image through a
{squeeze} and rebuilds it: {rebuilt}
The **detector** looks at what the ISM removed, *x − ISM(x)*: attacked images leave a tell-tale
residue, and it estimates how strong the attack was. {gate} **Regeneration** then searches a GAN
generator's latent space, step by step, for an image that matches the purified one; {final}.

{hardened}

**What it does not promise.** Against the paper's *gray-box* attacker, who does not know the
defense, purification helps a lot. Against an *adaptive* attacker, who differentiates through the
ISM and approximates the regeneration loop (BPDA, EOT), purifier defenses are known to lose most
of that (Athalye et al., 2018). The "adaptive white-box" setting and the robustness curves show by
how much, next to the baselines MagNet and DDSA.

**Words used here.** *Gray-box*: the attacker knows the classifier's weights but not the defense
(the paper's setting). *Adaptive white-box*: the attacker knows the whole defense and attacks
through it. *BPDA* (backward-pass differentiable approximation): the attacker treats a step it
cannot differentiate, here the regeneration search, as "output = input" when computing gradients.
*EOT* (expectation over transformation): against a randomised step, the attacker averages
gradients over several random draws. *ε*: the largest change allowed to any pixel (pixels run from
0 to 1; 8/255 is the usual "invisible" budget). *PGD* (projected gradient descent): the standard attack, many
small steps that each push the classifier's answer away from the right one, kept within ε; PGD-10 takes 10.
*FGSM*: one such step. *L∞ / L2*: the largest change to any one pixel / the overall size of the change.
*ISM* (Instance Sparsity Mapping network): the paper's purifier, which rebuilds the picture from a short code
(128 numbers) meant to keep what it shows and drop the attack (CIFAR-10's paper recipe then corrects that rebuilt
picture with a refiner that also reads the input; CelebA's moves the input back until it reads as the rebuild does). *GAN* (generative adversarial network): a
generator trained to draw pictures like the data set's; regeneration searches for the drawing closest to the
purified picture. *Mean squared difference*: the average, over pixels, of the squared difference between two
pictures. *CIFAR-10 (JPEG copy)*: the offline copy used here
re-encodes CIFAR-10 as JPEG, so figures are close to, not identical with, those on the original.
"""


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
