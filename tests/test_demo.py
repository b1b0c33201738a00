"""The demo tells a true story (issue 15): what the attacker targeted, whether it fooled that target,
what the detector did, what the defense finally said; bad settings are one clear sentence."""
import pytest
import torch

from ism.app.demo import run_demo
from ism.app.request import MAX_SEED, RunRequest, as_seed
from ism.eval.ablation import variant


def final_state(defense, x, label, **req):
    *_, last = run_demo(defense, x, label, RunRequest(**{"restarts": 1, "iterations": 2, **req}))
    assert last.done
    return last


def test_adaptive_run_reports_on_the_attackers_target(defense, real_images):
    """Panel 3 shows what the whole defense reads, so the verdict cannot say 'not fooled' while the final
    answer changed (the old demo compared the bare classifier)."""
    x, y = real_images
    d = variant(defense, gate=False, final_input="purified")
    for i in (0, 5, 9):
        s = final_state(d, x[i:i + 1], int(y[i]), attack="pgd", threat="adaptive white-box", eps=16 / 255)
        assert "targeted the whole defense" in s.verdict
        assert s.headline.startswith(("Fooled the whole defense → ", "Did not fool the whole defense → "))
        assert max(s.adversarial.top3, key=s.adversarial.top3.get) == max(s.final.top3, key=s.final.top3.get)
        assert "restored" not in s.verdict.lower()


def test_graybox_run_names_the_classifier_as_target(defense, real_images):
    x, y = real_images
    s = final_state(defense, x[:1], int(y[0]), attack="pgd", threat="gray-box", eps=8 / 255)
    assert "targeted the classifier alone" in s.verdict and "final answer" in s.verdict
    # the headline a class reads aloud: three steps, each true to the run
    attack, detector, answer = s.headline.split(" → ")
    fooled = max(s.adversarial.top3, key=s.adversarial.top3.get) != max(s.original.top3, key=s.original.top3.get)
    assert attack == ("Fooled the classifier" if fooled else "Did not fool the classifier")
    assert detector == ("caught" if s.detection["attacked"] else "missed")
    fin, truth = max(s.final.top3, key=s.final.top3.get), defense.classes[int(y[0])]
    again = fooled and max(s.original.top3, key=s.original.top3.get) == truth
    assert answer == (f"answered right{' again' if again else ''}: {fin}" if fin == truth else
                      f"answered wrong: {fin} (true: {truth})")


def test_panel_5_shows_the_isms_change_on_the_attacks_scale(defense, real_images):
    """The purifier's counter-change beside the attack's (issue "the pictures tell the truth"): drawn on panel 2's
    scale, its size said in /255 beside the attack's, in the panel and in the story."""
    import numpy as np

    from ism.app.demo import counter_change, of_255

    change = torch.zeros(1, 3, 32, 32)
    change[0, 0, 0, 0], change[0, 1, 5, 5], change[0, 2, 9, 9] = 4 / 255, -4 / 255, 12 / 255
    stage, size = counter_change(change, 4 / 255)      # the attack's largest change is full contrast, more saturates
    assert abs(size - 12 / 255) < 1e-7 and stage.image.min() == 0 and stage.image.max() == 255
    assert np.median(stage.image) in (127, 128)
    assert "at most 12 of 255 per pixel (the attack's: 4). Far larger than the attack" in stage.caption
    x, y = real_images
    s = final_state(defense, x[:1], int(y[0]), attack="pgd", threat="gray-box", eps=8 / 255)
    assert s.counter.image.shape == s.perturbation.image.shape and 0 < s.counter_linf <= 1
    said = f"at most {of_255(s.counter_linf)} of 255 per pixel (the attack's: {of_255(s.linf)})"
    assert said in s.counter.caption
    assert (f"The attack changed each pixel by at most {s.linf * 255:.1f}/255; the ISM answered with a change of "
            f"at most {s.counter_linf * 255:.1f}/255 (panel 5)") in s.verdict
    clean = final_state(defense, x[:1], int(y[0]), attack="fgsm", eps=0.0)
    assert "(the attack's" not in clean.counter.caption and "the ISM answered" not in clean.verdict


def test_no_attack_is_not_called_a_failed_defense(defense, real_images):
    x, y = real_images
    wrong = torch.tensor(int(y[0]) + 1) % 10       # a label the classifier does not give: wrong before any attack
    s = final_state(defense, x[:1], int(wrong), attack="pgd", eps=0.0)
    assert "No attack (epsilon 0)" in s.verdict and "already reads" in s.verdict
    assert "undid" not in s.verdict and "got through" not in s.verdict and "restored" not in s.verdict.lower()
    assert s.headline.startswith("No attack (ε = 0) → ") and "again" not in s.headline


def test_a_zero_perturbation_is_the_attack_finding_nothing(defense, real_images, monkeypatch):
    import ism.app.demo as demo

    x, y = real_images
    monkeypatch.setattr(demo, "make_attack", lambda *a, **k: (lambda xs, ys: xs.clone()))
    s = final_state(defense, x[:1], int(y[0]), attack="fgsm", eps=8 / 255)
    assert "found no perturbation" in s.verdict and "missed" not in s.verdict
    assert s.headline.startswith("The attack changed nothing → ") and "missed" not in s.headline


@pytest.mark.parametrize("value", [None, "", "  ", "abc", -1, 2**32, 10**20, 1.5, float("nan")])
def test_bad_seeds_are_one_clear_sentence(value):
    with pytest.raises(ValueError, match=f"whole number from 0 to {MAX_SEED}"):
        as_seed(value)


@pytest.mark.parametrize("value, seed", [(0, 0), (7.0, 7), ("12", 12), (MAX_SEED, MAX_SEED)])
def test_good_seeds(value, seed):
    assert as_seed(value) == seed and RunRequest(seed=seed).seed == seed


def test_the_server_streams_a_run_without_pacing_it(tiny_defense, monkeypatch):
    """The server never waits to pace a run (the page plays regeneration back itself, ``play_regeneration``):
    it sends the run's latest state at most every UPDATE_GAP seconds of a (fake) clock, and the final state at
    once, which holds every iteration and says why regeneration stopped."""
    from conftest import ROOT

    import ism.app.handlers as ui

    clock = [0.0]

    def tick():
        clock[0] += 0.1
        return clock[0]
    monkeypatch.setattr(ui, "_clock", tick)
    monkeypatch.setattr(ui.time, "sleep", lambda d: pytest.fail("the server paced a run"))
    handler = ui.DemoHandler(tiny_defense, "cifar10")
    stamps, frames = [], []
    for state, _, _ in handler.run(RunRequest(str(ROOT / "examples/cifar10/cat_0.png"), "fgsm", 8 / 255, 1, "gray-box", 1, 60, 0)):
        stamps.append(clock[0])
        if state.regeneration and state.final is None:
            frames.append(len(state.regeneration) - 1)
    assert 2 <= len(frames) < 61 and frames == sorted(set(frames))        # some iterations while computing
    assert all(b - a >= ui.UPDATE_GAP - 1e-9 for a, b in zip(stamps, stamps[1:-1]))   # at most one per gap
    assert state.done and len(state.regeneration) == 61 and "used all 60 iterations" in state.regen_stop


def test_the_page_plays_regeneration_back_from_the_frames():
    """The playback is the page's: a script that steps panel 6 through the final update's frames over the
    serving setting's seconds (none at 0)."""
    from ism.app.tabs.attack import play_regeneration

    assert "2000" in play_regeneration(2.0) and "#regen-live" in play_regeneration(2.0)
    assert "(0 > 0)" in play_regeneration(0)


def test_the_regeneration_curve_is_each_iterations_error():
    """The page draws the regeneration's curve itself (no server-side figure): one row per iteration, named
    while the run is short (no tick at half an iteration)."""
    from ism.app.render import regeneration_curve

    errors = [0.02 / (i + 1) for i in range(7)]
    table = regeneration_curve(errors)
    assert list(table["iteration"]) == [str(i) for i in range(7)]   # a short run: one whole-number tick each
    assert list(table["difference from panel 5 (mean squared)"]) == errors
    assert list(regeneration_curve([0.01] * 31)["iteration"]) == list(range(31))


def test_regeneration_frames_are_read_only_when_shown(tiny_defense, monkeypatch):
    """The app plays back at most MAX_FRAMES_SHOWN iterations, so a frame's top-3 reading (a pass
    through the classifier) is computed when first read, and is then the classifier's reading of it."""
    from conftest import ROOT

    import ism.app.demo as demo
    import ism.app.handlers as ui
    from ism.app.render import frame_caption, state_values

    handler = ui.DemoHandler(tiny_defense, "cifar10")
    calls = []
    real = demo.top3
    monkeypatch.setattr(demo, "top3", lambda *a, **k: calls.append(1) or real(*a, **k))
    for state, picture, _ in handler.run(RunRequest(str(ROOT / "examples/cifar10/cat_0.png"), "fgsm", 8 / 255, 1, "gray-box", 1, 60, 0)):
        state_values(state, picture, 3)                   # what the app sends for every state it streams
    frames = state.regeneration
    assert len(frames) == 61 and len(calls) < 61 - 30    # not one classifier pass per iteration
    # the run's end reads every frame in one batched pass (the frames gallery captions each with its reading)
    assert not any(callable(f.probs) for f in frames)
    assert len(frames[1].top3) == 3 and 0 < sum(frames[1].top3.values()) <= 1 + 1e-6
    assert frame_caption(frames[1]).startswith("#1: ") and frame_caption(frames[1]).endswith("%")


def test_playback_comes_from_the_serving_settings(tiny_defense):
    import app
    from ism.app.serve import ServeConfig

    demo = app.build_demo({"cifar10": tiny_defense}, serve=ServeConfig.from_env({"ISM_PLAYBACK": "0"}))
    assert demo.page.serve.playback == 0.0
    script = next(d["js"] for d in demo.config["dependencies"] if "regen-live" in str(d.get("js"))
                  and "gap" in str(d.get("js")))
    assert "!(0 > 0)" in script           # the page's playback script, made with the server's 0 s: no playback


def test_the_honest_note_gives_each_figure_its_own_image_count():
    """The page's adaptive-vs-gray-box sentence: the two figures are often measured on different numbers
    of test images (CelebA: 100 adaptive, 300 gray-box), and each is said with its own."""
    from ism.app.live import adaptive_summary

    results = {"clean": {"images": 5723}, "adaptive": {"pgd@0.0314": {"defense": 0.64, "images": 100}},
               "graybox": {"pgd@0.0314": {"defense": 0.87, "images": 300}}}
    text = adaptive_summary(results)
    assert ("In all (8/255): 87% of 300 right against gray-box PGD-10, 64% of 100 right against an attacker who knows "
            "the whole defense (adaptive).") in text
    assert "Adaptive (white-box) results are not measured yet" in adaptive_summary({"clean": {"images": 10}})
    assert "Measured" not in text                    # no caught / restored measured: no sentence about them
    results["graybox"]["pgd@0.0314"].update(fooled=0.366, caught=1.0, restored=0.126, images=1000)
    assert adaptive_summary(results).startswith(
        "**Measured** on 1,000 test pictures: gray-box PGD-10 at 8/255 turns 37% of them from right to wrong; the "
        "detector catches 100% of those and the defense answers 13% of them right again.\n\n")
    # measured by a gray-box evaluation of their own (results/<key>-graybox-caught-limit<N>.json), said the same way
    caught = {"clean": {"images": 500}, "graybox": {"pgd@0.0314": results["graybox"].pop("pgd@0.0314")}}
    caught["graybox"]["pgd@0.0314"].pop("images")
    text = adaptive_summary(results, caught)
    assert text.startswith("**Measured** on 500 test pictures: gray-box PGD-10 at 8/255 turns 37% of them")
    assert "against gray-box PGD-10" not in text     # the main file's gray-box row is gone: not said from the other


def test_the_header_finds_caught_figures_in_their_own_results_file(tiny_defense, tmp_path):
    """A defense whose main results predate fooled / caught / restored (results/celeba.json) says them from the
    gray-box evaluation that measured them, results/<key>-graybox-caught-limit<N>.json."""
    import json

    from ism.app.serve import ServeConfig
    from ism.app.tabs.page import Page

    page = Page({"cifar10": tiny_defense}, ServeConfig(), str(tmp_path))
    (tmp_path / "cifar10.json").write_text(json.dumps({"clean": {"images": 300}, "graybox": {"pgd@0.0314": {
        "defense": 0.87}}, "adaptive": {"pgd@0.0314": {"defense": 0.64, "images": 100}}}))
    assert "Measured" not in page.header("cifar10")
    (tmp_path / "cifar10-graybox-caught-limit1000.json").write_text(json.dumps({"clean": {"images": 1000}, "graybox": {
        "pgd@0.0314": {"defense": 0.85, "fooled": 0.4, "caught": 0.99, "restored": 0.8}}}))
    text = page.header("cifar10")
    assert ("**Measured** on 1,000 test pictures: gray-box PGD-10 at 8/255 turns 40% of them from right to wrong; the "
            "detector catches 99% of those and the defense answers 80% of them right again.") in text
    assert "87% of 300 right against gray-box PGD-10, 64% of 100" in text


@pytest.mark.parametrize("eps", [8 / 255, 0.3])
def test_an_upload_is_never_called_right_or_wrong(defense, real_images, eps):
    """No true label for an upload: the verdict compares with the classifier's own clean answer."""
    from ism.app.demo import run_demo

    x = real_images[0][5:6]
    *_, s = run_demo(defense, x, None, RunRequest(attack="pgd", eps=eps, steps=3, restarts=1, iterations=2))
    assert "classifier's own answer on your clean picture" in s.verdict
    assert "right" not in s.verdict and "wrong" not in s.verdict and "true label" not in s.verdict
    assert "your clean picture" in s.headline and not {"right", "wrong", "true"} & set(s.headline.split())


def test_the_detectors_chance_is_said_plainly():
    """Panel 4's words (issue "plain words"): never "100%" or "0%", the paper recipe's threshold 0.0057 not rounded
    to "1%", and two figures that differ never read the same."""
    from ism.app.demo import chances

    assert chances(0.9996, 0.0057) == ("over 99%", "0.6%")
    assert chances(0.00002, 0.45) == ("under 0.1%", "45.0%")
    assert chances(0.4504, 0.45) == ("45.04%", "45.00%")
    assert chances(0.7, 0.45) == ("70%", "45%")


def test_the_header_says_what_refusing_every_caught_picture_would_give():
    """Issue 41: the paper's third strategy (detection), measured under an attacker who knows about the refusal; said
    only where the evaluation measured it."""
    from ism.app.live import adaptive_summary

    results = {"clean": {"images": 1000}, "adaptive": {"pgd@0.0314": {"defense": 0.07, "images": 200}}}
    assert "Refusing" not in adaptive_summary(results)
    results["refusal"] = {"pgd@0.0314": {"images": 200, "clean_refused": 0.0, "graybox_stopped": 0.995,
                                         "adaptive_stopped": 0.32, "noise1_refused": 0.84, "steps": 10}}
    results["clean"]["false_positive_rate"] = 0.009
    text = adaptive_summary(results)
    assert ("**Refusing every caught picture instead** (answering nothing to it): on 200 test pictures at 8/255 it "
            "would stop over 99% of the gray-box attacks and 32% of those of the attacker we tried who knows about "
            "the refusal (PGD-10;") in text
    assert "and refuse 1% of 1,000 clean pictures" in text and "(it would refuse 84% of clean pictures" in text
