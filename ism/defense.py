"""The defense pipeline and its public API.

    x -> detector(x - ISM(x)) -> clean?  yes -> classifier(x)
                                  no  -> purified -> [regenerate] -> classifier(final image)

The purified picture is ISM(x), or with ``counter_bound`` > 0 the input moved by at most that per pixel until
the classifier reads it as it reads ISM(x) (``ism.counter``: the ISM decides, the picture stays faithful).

With ``gate = False`` (chosen on validation by ``python -m train pipeline``) the classifier reads
the final image for every input and the detector only reports; an adaptive attacker can then no
longer slip past the purifier by staying below the detector's threshold.

``Defense`` is an ``nn.Module`` whose ``forward`` is ``predict``: one logits tensor, so a
torchattacks attack can target the whole pipeline end to end.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ism.checks import check_images
from ism.models.classifier import Classifier
from ism.models.detector import PerturbationDetector
from ism.models.gan import Generator
from ism.models.inference import InferenceOnly
from ism.models.ism_net import ISMNetwork
from ism.regenerate import RegenerationStep, regenerate_steps

FINAL_INPUTS = ("purified", "regenerated", "mean")


class StaleWeightsWarning(UserWarning):
    """A component was trained against other weights than the ones it is loaded with."""


@dataclass
class DefenseConfig:
    dataset: str = "cifar10"
    final_input: str = "purified"   # which image the classifier reads for attacked inputs; chosen by
                                    # `python -m train pipeline` from validation measurements
    gate: bool = True               # True: only flagged inputs are purified; False: every input is
    regen_steps: int = 30           # default regeneration budget (Adam updates of z)
    regen_restarts: int = 4         # restart 0 starts at the ISM code, the rest at random
    regen_lr: float = 0.05
    regen_tol: float = 0.002        # stop when MSE(G(z), target) is below this for every image
    coarse_from: float | None = None  # an ISM with a refiner, or a counter-change: inputs the detector estimates
                                    # attacked at this epsilon or more are read on the auto-encoder's (blurry)
                                    # reconstruction, which large perturbations do not survive, instead of the
                                    # purified picture (bounded: it cannot answer a large attack); None: never
    counter_bound: float = 0.0      # > 0: the purified picture is the input moved by at most this per pixel until
                                    # the classifier reads it as it reads ISM(x) (ism/counter.py); 0: ISM(x)
    counter_steps: int = 10         # its signed-gradient steps, each of counter_step, ...
    counter_step: float = 2 / 255
    counter_margin: float = 1.0     # ... until the ISM's class leads the next by this logit margin
    seed: int = 0
    measurements: dict = field(default_factory=dict)  # validation figures behind final_input


@dataclass
class Detection:
    probability: torch.Tensor  # (N,) P(attacked)
    attacked: torch.Tensor     # (N,) bool: probability > calibrated threshold
    strength: torch.Tensor     # (N,) estimated L-inf epsilon


@dataclass
class Reading:
    """What the classifier read for each image of a batch, and why."""
    logits: torch.Tensor        # (N, num_classes): the pipeline's answer
    image: torch.Tensor         # (N, C, H, W): the image the classifier read
    source: list[str]           # per image: "input" (judged clean, let through) or the final_input read
    detection: Detection
    purified: torch.Tensor      # the purified picture (``Defense.purify``)
    coarse: torch.Tensor | None = None   # (N,) bool: read on the auto-encoder's reconstruction (``coarse_from``)


class Defense(InferenceOnly):
    """The whole defense. All methods take (N, C, H, W) float images in [0, 1].

    Example::

        >>> d = load_defense("weights/cifar10")
        >>> logits = d.predict(x)            # x: (N, 3, 32, 32) in [0, 1]
        >>> p_attacked = d.detect(x)
    """

    def __init__(self, classifier: Classifier, ism: ISMNetwork, detector: PerturbationDetector,
                 generator: Generator, config: DefenseConfig | None = None):
        super().__init__()
        self.classifier, self.ism, self.detector = classifier, ism, detector
        self.generator = generator   # the GAN's discriminator trains it and is not needed at inference
        self.config = config or DefenseConfig()
        if self.config.final_input not in FINAL_INPUTS:
            raise ValueError(f"final_input must be one of {FINAL_INPUTS}, got {self.config.final_input!r}")
        # convolution weights channels-last (NHWC): on a CPU one image's forward + backward through the
        # classifier takes 23 ms instead of 30 (the ISM and generator gain 10-18%); outputs agree to 5e-7
        self.to(memory_format=torch.channels_last)
        self.eval()

    # --- facts -----------------------------------------------------------------------------
    @property
    def classes(self) -> list[str]:
        return list(self.classifier.config.class_names)

    @property
    def image_size(self) -> int:
        return self.classifier.config.image_size

    @property
    def threshold(self) -> float:
        return float(self.detector.config.threshold)

    def _check(self, x, name: str = "x") -> torch.Tensor:
        p = next(self.parameters())
        if isinstance(x, torch.Tensor) and x.device != p.device:
            raise ValueError(f"{name} is on {x.device} but the defense is on {p.device}; move one of them")
        x = check_images(x, channels=self.classifier.config.in_channels, size=self.image_size, name=name)
        return x.to(p.dtype)   # any float dtype is accepted (float16/bfloat16/float64 -> the weights' dtype)

    # --- stages ----------------------------------------------------------------------------
    def purify(self, x: torch.Tensor) -> torch.Tensor:
        """The purified picture (N, C, H, W) in [0, 1]: ISM(x), or the counter-change's (``purified``)."""
        x = self._check(x)
        return self.purified(x, self.ism(x))

    def purified(self, x: torch.Tensor, ism_out: torch.Tensor, bpda: bool = False) -> torch.Tensor:
        """The purified picture of ``x`` given ``ism_out`` = ISM(x): ``ism_out`` itself, or with
        ``config.counter_bound`` the input moved back until the classifier reads it as it reads ``ism_out``.
        ``bpda=True`` (attacks through the pipeline): the counter-changed picture forward, the ISM's gradient
        backward (the ISM decides which class it aims for; Athalye et al. 2018)."""
        c = self.config
        if not c.counter_bound:
            return ism_out
        from ism.counter import counter_change

        with torch.no_grad():
            label = self.classifier(ism_out).argmax(1)
        out = counter_change(self.classifier, x, label, c.counter_bound, c.counter_steps, c.counter_step,
                             c.counter_margin).to(x.dtype)
        return ism_out + (out - ism_out).detach() if bpda else out

    def detect(self, x: torch.Tensor) -> torch.Tensor:
        """Probability that each image was attacked, (N,) in [0, 1]."""
        return self.detection(x).probability

    def detection(self, x: torch.Tensor, ism_out: torch.Tensor | None = None) -> Detection:
        """Probability, calibrated decision and estimated epsilon for each image (the detector reads
        x - ISM(x); ``ism_out``: ISM(x) already computed)."""
        x = self._check(x)
        ism_out = self.ism(x) if ism_out is None else ism_out
        logit, level = self.detector(x - ism_out)
        p = torch.sigmoid(logit.float())
        return Detection(p, p > self.threshold, self.detector.strength(level))

    def regenerate_steps(self, x: torch.Tensor, steps: int | None = None, restarts: int | None = None,
                         seed: int | None = None, target: str = "purified", image: torch.Tensor | None = None):
        """Iterate regeneration, yielding ``RegenerationStep``s (image, error, restart, done).

        ``target="purified"`` (default, as in the pipeline) matches the picture the defense reads for an attacked
        input (``coarse_read``: the purified picture, or the auto-encoder's reconstruction where ``coarse_from``
        picks it: a generator that can draw the data set would copy an attack that large); ``"input"`` matches x.
        Restart 0 starts at the generator's (or ISM's) code of the target. ``image``: that target, where the caller
        has already computed it (the app's run has). Arguments are checked at the call.
        """
        x = self._check(x)
        if target not in ("purified", "input"):
            raise ValueError(f"target must be 'purified' or 'input', got {target!r}")
        c = self.config
        steps = c.regen_steps if steps is None else int(steps)
        restarts = c.regen_restarts if restarts is None else int(restarts)
        with torch.no_grad():
            if image is not None:
                tgt = image
            elif target == "purified":
                ism_out = self.ism(x)
                tgt = self.coarse_read(x, self.purified(x, ism_out), self.detection(x, ism_out).strength)
            else:
                tgt = x
            z0 = self.start_latent(tgt)
        return regenerate_steps(self.generator, tgt, z0=z0, steps=steps, restarts=restarts,
                                lr=c.regen_lr, tol=c.regen_tol, seed=c.seed if seed is None else seed)

    def start_latent(self, image: torch.Tensor) -> torch.Tensor:
        """The latent regeneration starts from: the generator's own code of ``image`` when it has an encoder,
        else the ISM's code."""
        g = self.generator
        return g.encode(image) if g.encoder is not None else self.ism.encode(image)

    def regenerate(self, x: torch.Tensor, steps: int | None = None, restarts: int | None = None,
                   seed: int | None = None, target: str = "purified"):
        """Iterator of per-iteration images (N, C, H, W); the last one is the result."""
        return (s.image for s in self.regenerate_steps(x, steps, restarts, seed, target))

    def defended_image(self, x: torch.Tensor, purified: torch.Tensor | None = None,
                       regenerated: torch.Tensor | None = None, final_input: str | None = None,
                       bpda: bool = False, seed: int | None = None) -> torch.Tensor:
        """The image the classifier reads for an input judged attacked (for every input when
        ``config.gate`` is False): ``final_input`` (default ``config.final_input``) of purified,
        regenerated or their mean. ``regenerated`` reuses a regeneration already run (the app
        streams it); ``bpda=True`` makes the regeneration the identity in the backward pass
        (Athalye et al. 2018), for attacks through the whole pipeline. The one place that decides
        which image is read besides the gate (``read``)."""
        mode = final_input or self.config.final_input
        if mode not in FINAL_INPUTS:
            raise ValueError(f"final_input must be one of {FINAL_INPUTS}, got {mode!r}")
        purified = self.purified(x, self.ism(x)) if purified is None else purified
        if mode == "purified":
            return purified
        if regenerated is None:
            *_, last = self.regenerate_steps(x.detach() if bpda else x, seed=seed)
            regenerated = last.image
        base = purified.detach() if bpda else purified
        target = regenerated if mode == "regenerated" else (base + regenerated) / 2
        return purified + (target - purified).detach() if bpda else target

    def read(self, x: torch.Tensor, final_input: str | None = None,
             regenerated: torch.Tensor | None = None) -> Reading:
        """The pipeline's answer with its reasons: detect, then let the input through (judged
        clean, with the gate on) or read ``defended_image``. ``predict`` is ``read(x).logits``."""
        x = self._check(x)
        ism_out = self.ism(x)
        det = self.detection(x, ism_out)
        purified = self.purified(x, ism_out)
        mode = final_input or self.config.final_input
        defend = self.defends(det)
        image = x
        if defend.any():
            read = self.coarse_read(x, purified, det.strength)
            defended = self.defended_image(x, read, regenerated, mode)
            image = torch.where(defend.view(-1, 1, 1, 1), defended, x)
        source = [mode if d else "input" for d in defend.tolist()]
        return Reading(self.classifier(image), image, source, det, purified, self.on_blur(det))

    def defends(self, det: Detection) -> torch.Tensor:
        """Which inputs the defense answers with its own picture: every one with the gate off, the flagged with it on."""
        return torch.ones_like(det.attacked) if not self.config.gate else det.attacked

    def coarse(self, det: Detection) -> torch.Tensor | None:
        """Which inputs are past ``config.coarse_from`` (strong enough to be read on the ISM's auto-encoder
        reconstruction if defended), or None."""
        return self._coarse_at(det.strength)

    def on_blur(self, det: Detection) -> torch.Tensor | None:
        """Which inputs the defense reads on the ISM's auto-encoder reconstruction (the blur): past ``coarse_from``
        and defended (``defends``); None where the defense never reads it. ``Reading.coarse``."""
        coarse = self.coarse(det)
        return None if coarse is None else coarse & self.defends(det)

    def _coarse_at(self, strength: torch.Tensor) -> torch.Tensor | None:
        c = self.config
        if c.coarse_from is None or (getattr(self.ism, "refiner", None) is None and not c.counter_bound):
            return None
        return strength >= c.coarse_from

    def coarse_read(self, x: torch.Tensor, purified: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
        """The picture ``defended_image`` starts from: ``purified``, or for inputs whose estimated attack
        ``strength`` (the detector's) ``coarse`` picks, the auto-encoder's reconstruction."""
        coarse = self._coarse_at(strength)
        return purified if coarse is None else torch.where(coarse.view(-1, 1, 1, 1), self.ism.reconstruct(x), purified)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes) of the whole pipeline: gate by the detector, purify the attacked
        (every input when ``config.gate`` is False)."""
        return self.read(x).logits

    def predict_all(self, x: torch.Tensor) -> tuple[torch.Tensor, Detection, torch.Tensor]:
        """(pipeline logits, detection, purified image) from one pass of the ISM."""
        r = self.read(x)
        return r.logits, r.detection, r.purified

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.predict(x)


def bundled_weights(name: str) -> Path | None:
    """The shipped defense ``name`` (``cifar10``, ``celeba``, ...): the repository's ``weights/`` beside
    this package, or the copy ``pip install .`` puts in site-packages (``ism_weights``)."""
    import importlib.util

    candidates = [Path(__file__).resolve().parents[1] / "weights"]
    spec = importlib.util.find_spec("ism_weights")       # a namespace package: data only, no __init__.py
    if spec is not None:
        candidates += [Path(p) for p in spec.submodule_search_locations or ()]
    for base in candidates:
        if (base / name / "defense.json").is_file():
            return base / name
    return None


def resolve_weights(path_or_repo: str | Path, revision: str | None) -> Path:
    """A folder as given; else a shipped defense by name (``"celeba"`` or ``"weights/celeba"`` from any
    directory); else a Hub repo id, downloaded."""
    from ism.hub import WeightsError

    p = Path(path_or_repo)
    if p.is_dir():
        return p
    if not p.is_absolute() and len(p.parts) <= 2 and p.parts[:-1] in ((), ("weights",)):
        shipped = bundled_weights(p.name)
        if shipped is not None:
            return shipped
    if p.exists() or str(path_or_repo).startswith((".", "/")) or str(path_or_repo).count("/") != 1:
        raise WeightsError(f"{path_or_repo}: not a weights folder and not a Hub repo id (owner/name)")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id=str(path_or_repo), revision=revision,
                                      allow_patterns=["*.json", "*/model.safetensors", "*.md"]))
    except Exception as e:
        raise WeightsError(f"could not load Hub repo {path_or_repo!r} (revision {revision or 'main'}): "
                           f"{type(e).__name__}: {e}") from e


def load_defense(path_or_repo: str | Path = "weights/cifar10", revision: str | None = None,
                 device: str | torch.device = "cpu") -> Defense:
    """Load a defense from a local folder or a Hugging Face Hub repo id (+ ``revision``).

    The folder holds ``defense.json`` and one sub-folder per component (classifier, ism, detector,
    generator; a ``discriminator`` folder, the GAN's training partner, is not loaded), each
    ``config.json`` + ``model.safetensors`` + ``README.md``.
    Set ``HF_HUB_OFFLINE=1`` to load from the local Hub cache only.
    """
    from ism.hub import WeightsError, stale_components, strict_config, verify_file

    root = resolve_weights(path_or_repo, revision)
    cfg_file = root / "defense.json"
    if not cfg_file.is_file():
        raise WeightsError(f"{cfg_file} is missing: not a defense weights folder")
    verify_file(cfg_file)
    try:
        cfg = strict_config(DefenseConfig, json.loads(cfg_file.read_text()), cfg_file)
    except (json.JSONDecodeError, TypeError) as e:
        raise WeightsError(f"{cfg_file} is not a valid defense config: {e}") from e
    parts = {}
    for name, cls in (("classifier", Classifier), ("ism", ISMNetwork), ("detector", PerturbationDetector),
                      ("generator", Generator)):
        folder = root / name
        if not folder.is_dir():
            raise WeightsError(f"{folder} is missing")
        parts[name] = cls.from_pretrained(str(folder), map_location=str(device))
    defense = Defense(**parts, config=cfg).to(device)
    defense.source = root   # where it came from (the app reads what was trained, e.g. the ablation folders)
    defense.stale = stale_components(root)   # components trained against weights that changed since
    for message in defense.stale:
        warnings.warn(f"{root}: {message}", StaleWeightsWarning, stacklevel=2)
    return defense


def save_defense_config(folder: str | Path, config: DefenseConfig, against: dict[str, str] | None = None) -> None:
    """Write ``folder/defense.json`` and record its sha256 (and, given ``against``, the weights it
    was chosen for) next to the components' checksums."""
    from ism.hub import record_checksum, record_lineage

    Path(folder).mkdir(parents=True, exist_ok=True)
    Path(folder, "defense.json").write_text(json.dumps(asdict(config), indent=2) + "\n")
    record_checksum(folder, Path(folder, "defense.json"))
    if against:
        record_lineage(folder, "defense.json", against)


__all__ = ["Defense", "DefenseConfig", "Detection", "Reading", "RegenerationStep", "load_defense"]
