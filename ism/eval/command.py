"""``python -m ism.eval --dataset cifar10 [--limit N]``: the evaluation of ``ism.eval.evaluation``.

Writes ``results/<dataset>.json``, ``results/<dataset>.md`` and the plots
``results/<dataset>-{fgsm,pgd,roc}.png``; resumable (partial results in ``.cache/eval``), seeded.
Sanity-check failures are printed as warnings and written into the results.

Runs unchanged under ``torchrun --nproc_per_node N python -m ism.eval ...``: each process
evaluates a share of every section's batches (gloo on CPU, nccl with one GPU per process) and
process 0 writes the merged results, identical to a single-process run.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch

from ism import distributed
from ism.attacks.standard import parse_eps
from ism.data.datasets import DATASETS, load_split
from ism.data.subsets import spread
from ism.defense import load_defense, resolve_weights
from ism.eval.evaluation import SECTIONS, EvalConfig, evaluate
from ism.eval.report import files_line, markdown, write_figures
from ism.eval.sanity import sanity_checks, warnings_text
from ism.models.baselines import load_baselines


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m ism.eval", description=__doc__)
    p.add_argument("--dataset", default="cifar10", choices=sorted(DATASETS))
    p.add_argument("--data", default=None, help="data root (default: the shared copy)")
    p.add_argument("--weights", default=None, help="weights folder or Hub repo id (default weights/<dataset>)")
    p.add_argument("--limit", type=int, default=None, help="N test images, spread over classes")
    p.add_argument("--out", default="results")
    p.add_argument("--name", default=None, help="results file stem (default: the data set's name), e.g. cifar10-paper")
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="auto", help="auto (cuda:<LOCAL_RANK> if available, else cpu), cpu, cuda")
    p.add_argument("--adaptive-eps", default=None,
                   help="comma-separated epsilons for the adaptive attacks, e.g. 4/255,8/255 (default: 4/255, 8/255, "
                        "16/255, 0.2, 0.3, 0.4)")
    p.add_argument("--eps", default=None,
                   help="comma-separated gray-box epsilons (default: 8/255, 0.1, 0.2, 0.3, 0.4); e.g. 0.3 for Table 4 alone")
    p.add_argument("--sections", default=",".join(SECTIONS),
                   help=f"comma-separated sections to run (default all: {','.join(SECTIONS)}); clean always runs")
    p.add_argument("--adaptive-images", type=int, default=EvalConfig.adaptive_images,
                   help="images for the white-box attacks (a spread subset; 0 = all)")
    p.add_argument("--autoattack-images", type=int, default=EvalConfig.autoattack_images,
                   help="images for AutoAttack (standard, 8/255; a spread subset; 0 = skip)")
    p.add_argument("--small", action="store_true",
                   help="smoke test: a few images and steps for the latent, ablation, sanity and regeneration sections")
    p.add_argument("--fresh", action="store_true", help="ignore partial results from an earlier run")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    command = "python -m ism.eval " + " ".join(shlex.quote(x) for x in (argv if argv is not None else sys.argv[1:]))
    device = distributed.init(a.device)
    root = resolve_weights(a.weights or f"weights/{a.dataset}", None)
    d = load_defense(root, device=device)
    info = DATASETS[a.dataset]
    test = load_split(a.data or info.root, "test", dataset=a.dataset, image_size=d.image_size)
    idx = spread(len(test), a.limit, a.seed)
    cfg = EvalConfig(batch_size=a.batch_size, seed=a.seed, adaptive_images=a.adaptive_images or None,
                     autoattack_images=a.autoattack_images)
    if a.eps is not None:
        cfg.eps = [parse_eps(v) for v in a.eps.split(",") if v.strip()]
    if a.adaptive_eps is not None:
        cfg.adaptive_eps = [parse_eps(v) for v in a.adaptive_eps.split(",") if v.strip()]
    if a.small:  # every section runs, on a few images with few steps: a smoke test, not a measurement
        cfg.latent_images, cfg.ablation_images, cfg.ablation_regen_images = 4, 6, 2
        cfg.sanity_images, cfg.regen_images = 4, 4
        cfg.autoattack_images = 0     # AutoAttack's 5,000 Square queries and FAB-T take minutes even on 4 images
        cfg.latent_steps, cfg.square_queries, cfg.sanity_steps = 5, 100, 5
    state = Path(".cache/eval") / f"{a.name or a.dataset}-{a.limit or 'all'}-{a.seed}-v3.json"
    if a.fresh and state.exists() and distributed.is_main():
        state.unlink()
    distributed.barrier()
    t0 = time.time()
    before = set(json.loads(state.read_text())) if state.exists() else set()
    res = evaluate(d, test.images[idx], test.labels[idx], cfg, state, weights_root=root,
                   sections=[v.strip() for v in a.sections.split(",") if v.strip()], **load_baselines(root, device))
    res["command"], res["wall_seconds_this_run"] = command, round(time.time() - t0, 1)
    res["processes"], res["device"] = distributed.world(), str(device.type)
    if distributed.is_main():   # which run measured which section (a resumed evaluation has several)
        saved = json.loads(state.read_text())
        done = [k for k in SECTIONS if k in res and k not in before]
        if done:    # a run that only rewrote the report measured nothing
            saved["runs"] = [*saved.get("runs", []), {"command": command, "device": str(device), "sections": done}]
        res["runs"] = saved.get("runs", [])
        state.write_text(json.dumps(saved))
    if not distributed.is_main():
        distributed.shutdown()
        return res
    res["data"], res["dataset"] = info.title, a.dataset
    res["sanity_checks"] = sanity_checks(res)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = (a.name or a.dataset) + (f"-limit{a.limit}" if a.limit else "")
    (out / f"{stem}.json").write_text(json.dumps(res, indent=1) + "\n")
    figures = write_figures(res, out, stem, res["data"])
    (out / f"{stem}.md").write_text(markdown(res, f"Evaluation: {res['data']}", command) + files_line(stem, figures))
    print((out / f"{stem}.md").read_text())
    for w in warnings_text(res["sanity_checks"]):
        print(w, file=sys.stderr)
    distributed.shutdown()
    return res


if __name__ == "__main__":
    main()
