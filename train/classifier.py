"""Train the target classifier (paper Table 1), hardened as the paper says.

Recipe (a lab notebook; figures measured are in weights/<dataset>/classifier/README.md):
1. Teacher: cross-entropy on logits / T, T = 5 (defensive distillation, Papernot et al. 2016).
   T is kept moderate on purpose: a large T saturates the student's softmax at T = 1 and masks
   gradients, which inflates gray-box numbers without real robustness (Carlini & Wagner 2016).
2. Student, same shape, trained on the teacher's soft labels at T (KL * T^2) plus the hard
   label, on batches mixing clean images and adversarial ones (FGSM with random start,
   Wong et al. 2020, eps 8/255, step 10/255, crafted against the student itself): distillation and
   adversarial training in one stage, as the paper combines them. Deployed at T = 1.
Both: AdamW + one-cycle LR, random crop + flip, bf16 autocast, channels_last.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ism.classifier import Classifier, ClassifierConfig
from ism.data import augment

from .common import Run, accuracy


@dataclass
class ClassifierTrainConfig:
    channels: list = field(default_factory=lambda: [32, 64, 64, 64])  # CPU budget; paper: 128,256,128,64
    hidden: int = 512                                                  # paper: 1024
    teacher_epochs: float = 8
    student_epochs: float = 10
    lr: float = 2e-3
    weight_decay: float = 5e-4
    temperature: float = 5.0
    soft_weight: float = 0.5      # loss = soft * KL_T + (1 - soft) * CE
    adv_eps: float = 8 / 255
    adv_step: float = 10 / 255
    adv_fraction: float = 0.5     # share of each batch replaced by its adversarial version


def fgsm_rs(model, x, y, eps, step, run: Run):
    """FGSM with a random start (Wong et al. 2020): one gradient per batch."""
    delta = torch.empty_like(x).uniform_(-eps, eps).requires_grad_(True)
    with run.autocast():
        loss = F.cross_entropy(model((x + delta).clamp(0, 1)), y)
    (g,) = torch.autograd.grad(loss, delta)
    delta = (delta + step * g.sign()).clamp(-eps, eps)
    return (x + delta).clamp(0, 1).detach()


def _train_stage(run: Run, model: Classifier, tc: ClassifierTrainConfig, stage: str, epochs: float,
                 teacher: Classifier | None, state: dict | None) -> None:
    resume = state if state and state.get("stage") == stage else None
    opt, sched, steps_per_epoch, total, start = run.one_cycle(
        model, tc.lr, epochs, run.cfg.batch_size, pct_start=0.25, weight_decay=tc.weight_decay, state=resume)
    if resume:
        torch.set_rng_state(resume["rng"])
    T = tc.temperature
    batches = run.loop(lambda seed: run.batches(run.train, True, seed=seed), steps_per_epoch, total, start, stage)
    net = run.parallel(model)
    for step, epoch, (x, y), epoch_end, bar in batches:
        x = augment(x)
        model.train()
        soft = None
        if teacher is not None:
            with torch.no_grad(), run.autocast():
                soft = F.softmax(teacher(x).float() / T, 1)  # soft labels of the clean images
            k = int(len(x) * tc.adv_fraction)
            if k:
                x = torch.cat([fgsm_rs(model, x[:k], y[:k], tc.adv_eps, tc.adv_step, run), x[k:]])
        with run.autocast():
            logits = net(x).float()
        if soft is None:
            loss = F.cross_entropy(logits / T, y)
        else:
            kl = F.kl_div(F.log_softmax(logits / T, 1), soft, reduction="batchmean") * T * T
            loss = tc.soft_weight * kl + (1 - tc.soft_weight) * F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step(); sched.step()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
        if epoch_end:
            acc = accuracy(model, run, run.val)
            run.log(stage=stage, epoch=epoch, step=step + 1, loss=round(loss.item(), 4), val_acc=round(acc, 4))
            run.save_ckpt(stage=stage, model=model.state_dict(), opt=opt.state_dict(),
                          sched=sched.state_dict(), step=step + 1, rng=torch.get_rng_state(),
                          teacher=None if teacher is None else teacher.state_dict())


def train_classifier(run: Run, tc: ClassifierTrainConfig | None = None) -> Classifier:
    tc = run.configure(tc or ClassifierTrainConfig())
    sample = run.train.float(torch.arange(0, len(run.train), max(1, len(run.train) // 5000)))
    mc = ClassifierConfig(num_classes=len(run.classes), image_size=run.cfg.image_size, channels=list(tc.channels),
                          hidden=tc.hidden, class_names=list(run.classes),
                          mean=[round(v, 4) for v in sample.mean((0, 2, 3)).tolist()],   # training-set statistics
                          std=[round(v, 4) for v in sample.std((0, 2, 3)).tolist()])
    state = run.load_ckpt()
    teacher = Classifier(mc).to(run.device).to(memory_format=torch.channels_last)
    if not state or state.get("stage") == "teacher":
        _train_stage(run, teacher, tc, "teacher", run.epochs(tc.teacher_epochs), None, state)
        state = None
    else:
        teacher.load_state_dict(state["teacher"])
    teacher.eval().requires_grad_(False)
    teacher_acc = accuracy(teacher, run, run.test)
    run.log(stage="teacher", test_acc=round(teacher_acc, 4))
    publish_teacher(run, teacher, tc, teacher_acc)
    student = Classifier(mc).to(run.device).to(memory_format=torch.channels_last)
    _train_stage(run, student, tc, "student", run.epochs(tc.student_epochs), teacher, state)
    student.eval()
    metrics = measure_classifier(run, student, tc)
    metrics["teacher clean accuracy (test)"] = round(teacher_acc, 4)
    save_classifier(run, student, tc, metrics)
    return student


def measure_classifier(run: Run, model: Classifier, tc: ClassifierTrainConfig) -> dict:
    from ism.attacks import make_attack

    metrics = {"clean accuracy (test)": round(accuracy(model, run, run.test), 4)}
    sub = run.test.subset(torch.arange(min(1000, len(run.test))))
    for name, eps in (("fgsm", 8 / 255), ("pgd", 8 / 255), ("fgsm", 0.3), ("pgd", 0.3)):
        atk = make_attack(name, model, eps)

        def adv(x, y, atk=atk):
            with torch.enable_grad(), run.autocast():
                return atk(x, y)
        metrics[f"{name.upper()} eps={eps:.3g} accuracy, no defense (first {len(sub)} test)"] = round(
            accuracy(model, run, sub, adv), 4)
    return metrics


def save_classifier(run: Run, model: Classifier, tc: ClassifierTrainConfig, metrics: dict) -> None:
    run.publish(model, "Target classifier", metrics=metrics, train_config=tc, summary=(
        "Layer sequence of paper Table 1 (see ism/classifier.py for the documented fixes), "
        f"widths {tc.channels} + Dense({tc.hidden}). Hardened by defensive distillation "
        f"(T = {tc.temperature}) and FGSM-RS adversarial training (eps {tc.adv_eps:.4f}). "
        "Input: (N, 3, H, W) floats in [0, 1]; output: logits."))


def publish_teacher(run: Run, teacher: Classifier, tc: ClassifierTrainConfig, test_acc: float) -> None:
    """The teacher is the ablation's 'classifier alone' (cross-entropy only, no hardening)."""
    run.publish(teacher, "Classifier alone (ablation: distillation teacher)", train_config=tc,
                folder=run.out.parent / "ablation" / "plain",
                metrics={"clean accuracy (test)": round(test_acc, 4)}, summary=(
                    f"The distillation teacher: Table 1 classifier, widths {tc.channels} + Dense({tc.hidden}), "
                    f"trained with cross-entropy on logits / {tc.temperature}; no distillation and no adversarial "
                    "training. Used by the per-stage ablation. Input: (N, 3, H, W) floats in [0, 1]; output: logits."))


def train_distilled(run: Run, tc: ClassifierTrainConfig | None = None) -> Classifier:
    """Ablation stage '+ defensive distillation': a student of the shipped teacher
    (``<out>/ablation/plain``) trained on soft labels only, without adversarial examples."""
    tc = run.configure(tc or ClassifierTrainConfig(adv_fraction=0.0))
    folder = run.out.parent / "ablation" / "plain"
    if not (folder / "model.safetensors").exists():
        raise FileNotFoundError(f"{folder} has no teacher: run `python -m train classifier` first")
    teacher = Classifier.from_pretrained(str(folder)).to(run.device).to(memory_format=torch.channels_last)
    teacher.eval().requires_grad_(False)
    student = Classifier(teacher.config).to(run.device).to(memory_format=torch.channels_last)
    state = run.load_ckpt()
    _train_stage(run, student, tc, "student", run.epochs(tc.student_epochs), teacher, state)
    student.eval()
    run.publish(student, "Classifier + defensive distillation (ablation)", train_config=tc,
                folder=run.out.parent / "ablation" / "distilled",
                metrics=measure_classifier(run, student, tc), summary=(
                    f"Student of the teacher in ablation/plain at T = {tc.temperature}, soft labels (KL * T^2) plus "
                    "the hard label, no adversarial examples. Used by the per-stage ablation. Input: (N, 3, H, W) "
                    "floats in [0, 1]; output: logits."))
    return student
