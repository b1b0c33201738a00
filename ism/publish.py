"""Publish a defense folder to the Hugging Face Hub, checked first.

    python -m ism.publish weights/cifar10 --repo OWNER/NAME [--revision TAG] [--dry-run]
    python -m ism.publish weights/celeba --update-card --results results/celeba-table4.json

Before anything is sent the folder must load (``load_defense``: strict configs and tensors, no stale
component), every file recorded in ``checksums.json`` must match it, every weights file must be
recorded, every component must carry its card, and the root card's ``model-index`` must hold only
figures that are in the evaluation results it names (each metric names its results file and the key
in it). ``--dry-run`` does all of that and lists what would be sent, with sizes; nothing touches the
network. A real run creates the repo (``exist_ok``), uploads the folder in one commit and, with
``--revision``, tags that commit, so a Space can pin it: ``ISM_WEIGHTS=OWNER/NAME ISM_REVISION=TAG``.

``--update-card`` (re)writes the root card's ``model-index`` from evaluation results (``--results``,
default ``results/<folder name>.json``), keeping the card's text.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

from ism.hub import CHECKSUMS_NAME, CONFIG_NAME, WEIGHTS_NAME, WeightsError, sha256

CARD_NAME = "README.md"
TASK = "image-classification"
DATASETS = {"cifar10": ("cifar10", "CIFAR-10 (JPEG copy)"), "celeba": ("celeba", "CelebA, Male attribute, 64x64")}
EPS_KEY = "pgd@0.0314"     # L-inf 8/255, the figure every robustness table reports


@dataclass(frozen=True)
class Figure:
    """One published figure: where it is in an evaluation result and what it measures (threat model)."""
    path: tuple[str, ...]        # keys into the results JSON
    name: str                    # the metric's name on the Hub, with its threat model
    count: tuple[str, ...]       # keys to the number of test images it was measured on
    metric: str = "accuracy"     # the Hub's metric type


FIGURES = (
    Figure(("clean", "pipeline"), "clean accuracy, whole defense (no attack)", ("clean", "images")),
    Figure(("autoattack", "defense"), "AutoAttack ({version}, L-inf 8/255) through the whole defense, "
           "white-box with BPDA", ("autoattack", "images")),
    Figure(("autoattack", "no_defense"), "AutoAttack ({version}, L-inf 8/255) on the classifier alone",
           ("autoattack", "images")),
    Figure(("adaptive", EPS_KEY, "defense"), "adaptive PGD-10 (BPDA + EOT, L-inf 8/255) through the whole "
           "defense: the attacker knows it", ("adaptive", EPS_KEY, "images")),
    Figure(("graybox", EPS_KEY, "defense"), "gray-box PGD-10 (L-inf 8/255) on the classifier, read through "
           "the defense: the attacker does not know it (an upper bound, not robustness)", ("graybox", EPS_KEY,
                                                                                           "images")),
    Figure(("graybox", EPS_KEY, "caught"), "of the images gray-box PGD-10 (L-inf 8/255) turns from right to wrong, "
           "the share the detector catches", ("graybox", EPS_KEY, "images"), metric="recall"),
    Figure(("graybox", EPS_KEY, "restored"), "of the images gray-box PGD-10 (L-inf 8/255) turns from right to wrong, "
           "the share the defense answers right again", ("graybox", EPS_KEY, "images")),
    # what the eye sees (issue "the pictures tell the truth"), on the images the same attack fools
    *(Figure(("graybox", EPS_KEY, "pictures", f"psnr_{k}_db"), f"PSNR to the original of the {k} picture (dB), on the "
             "images gray-box PGD-10 (L-inf 8/255) turns from right to wrong", ("graybox", EPS_KEY, "images"), "psnr")
      for k in ("attacked", "purified", "regenerated")),
    Figure(("graybox", EPS_KEY, "pictures", "largest_counter_change_255"), "largest change the purifier makes to an "
           "attacked picture (L-inf, /255), gray-box PGD-10 (L-inf 8/255)", ("graybox", EPS_KEY, "images"), "linf"),
    *(Figure(("graybox", EPS_KEY, f"restored_{k}"), f"of the images gray-box PGD-10 (L-inf 8/255) turns from right to "
             f"wrong, the share read right on the {k} picture", ("graybox", EPS_KEY, "images"))
      for k in ("purified", "regenerated")),
    Figure(("clean", "purified_psnr_db"), "PSNR of a clean picture through the purifier (dB)", ("clean", "images"),
           "psnr"),
)


def _dig(d: dict, path: tuple[str, ...]):
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def eval_results(results_files: list[Path], root: Path = Path(".")) -> list:
    """``huggingface_hub.EvalResult``s for every figure found in ``results_files``; where several
    files have one, the one measured on the most images. Each names its file (``source_name``) and
    key (``metric_args``), which is what ``check_card`` verifies."""
    from huggingface_hub import EvalResult

    loaded = []
    for f in results_files:
        try:
            loaded.append((f, json.loads(Path(f).read_text())))
        except (OSError, json.JSONDecodeError) as e:
            raise WeightsError(f"{f}: not a readable evaluation result ({e})") from e
    out = []
    for fig in FIGURES:
        found = [(int(_dig(r, fig.count) or 0), f, r) for f, r in loaded if _dig(r, fig.path) is not None]
        if not found:
            continue
        images, f, r = max(found, key=lambda t: t[0])
        dataset, dataset_name = DATASETS.get(r.get("dataset"), (r.get("dataset", "unknown"), r.get("data", "")))
        out.append(EvalResult(
            task_type=TASK, dataset_type=dataset, dataset_name=dataset_name, dataset_split="test",
            metric_type=fig.metric, metric_value=round(float(_dig(r, fig.path)), 4),
            metric_name=f"{_named(fig, r)} ({images:,} test images)",
            metric_args={"results": _relative(Path(f), root), "key": "/".join(fig.path), "images": images}))
    return out


def _named(fig: Figure, result: dict) -> str:
    """The figure's name for one result: AutoAttack's says which of its versions ran (on two classes, the attacks of
    the standard one that apply: ``ism.eval.evaluation.autoattack``)."""
    version = _dig(result, ("autoattack", "version")) or "standard"
    return fig.name.format(version="standard" if version == "standard" else "APGD-CE + Square, the standard "
                                                                            "version's attacks for two classes")


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def update_card(folder: Path, results_files: list[Path], root: Path = Path(".")) -> list:
    """Rewrite ``folder/README.md``'s front matter ``model-index`` from ``results_files``."""
    from huggingface_hub import ModelCard

    card_file = folder / CARD_NAME
    if not card_file.is_file():
        raise WeightsError(f"{card_file} is missing: write the defense's card first")
    card = ModelCard.load(card_file)
    results = eval_results(results_files, root)
    if not results:
        raise WeightsError(f"no published figure found in {', '.join(map(str, results_files))}")
    card.data.eval_results = results
    card.data.model_name = card.data.model_name or f"ism-defense-{folder.name}"
    card.save(card_file)
    return results


def check_card(folder: Path, root: Path = Path(".")) -> list[str]:
    """Problems with the root card: missing, no ``model-index``, or a figure that is not the one in
    the results file it names."""
    from huggingface_hub import ModelCard

    card_file = folder / CARD_NAME
    if not card_file.is_file():
        return [f"{card_file} is missing (the Hub shows it as the model's page)"]
    try:
        card = ModelCard.load(card_file, ignore_metadata_errors=False)
    except Exception as e:
        return [f"{card_file}: front matter does not parse ({type(e).__name__}: {e})"]
    problems = []
    if card.data.library_name != "ism-defense":
        problems.append(f"{card_file}: library_name should be ism-defense")
    if not card.data.eval_results:
        return problems + [f"{card_file} has no model-index: python -m ism.publish {folder} --update-card "
                           "--results results/<name>.json"]
    for r in card.data.eval_results:
        args = r.metric_args or {}
        source = root / str(args.get("results", ""))
        if not args.get("results") or not source.is_file():
            problems.append(f"{card_file}: {r.metric_name!r} names no results file that exists ({args.get('results')})")
            continue
        value = _dig(json.loads(source.read_text()), tuple(str(args.get("key", "")).split("/")))
        if value is None or round(float(value), 4) != round(float(r.metric_value), 4):
            problems.append(f"{card_file}: {r.metric_name!r} is {r.metric_value} but {args['results']} "
                            f"[{args.get('key')}] holds {value}")
    return problems


def check_folder(folder: Path, root: Path = Path(".")) -> list[str]:
    """Every reason not to publish ``folder``; [] when it is ready."""
    from ism.defense import load_defense

    problems = []
    manifest = folder / CHECKSUMS_NAME
    if not manifest.is_file():
        return [f"{manifest} is missing: publish folders written by `python -m train`"]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            defense = load_defense(folder)
        problems += [f"stale: {m}" for m in defense.stale]
    except WeightsError as e:
        problems.append(f"does not load: {e}")
    sums = json.loads(manifest.read_text())
    for rel, expected in sums.items():
        f = folder / rel
        if not f.is_file():
            problems.append(f"{rel} is recorded in {CHECKSUMS_NAME} but missing")
        elif sha256(f) != expected:
            problems.append(f"{rel} does not match its recorded sha256")
    for w in sorted(folder.rglob(WEIGHTS_NAME)):
        rel = w.relative_to(folder).as_posix()
        if rel not in sums:
            problems.append(f"{rel} has no recorded sha256")
        for name in (CONFIG_NAME, CARD_NAME):
            if not (w.parent / name).is_file():
                problems.append(f"{w.parent.relative_to(folder).as_posix()}/{name} is missing")
    return problems + check_card(folder, root)


def files_to_send(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not any(s.startswith(".") for s in
                                                                           p.relative_to(folder).parts))


def publish(folder: str | Path, repo: str, revision: str | None = None, dry_run: bool = False,
            private: bool | None = None, token: str | None = None, root: Path = Path("."), out=None) -> list[Path]:
    """Check ``folder`` and send it to the Hub repo ``repo`` (tagged ``revision``); returns the files
    sent (or, with ``dry_run``, that would be). Raises ``WeightsError`` listing every problem."""
    folder, out = Path(folder), out or sys.stdout
    if not folder.is_dir():
        raise WeightsError(f"{folder} is not a folder")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise WeightsError(f"--repo {repo!r}: expected OWNER/NAME")
    problems = check_folder(folder, root)
    if problems:
        raise WeightsError(f"{folder} is not ready to publish:\n" + "\n".join(f"  - {p}" for p in problems))
    files = files_to_send(folder)
    total = sum(f.stat().st_size for f in files)
    print(f"{'would send' if dry_run else 'sending'} {len(files)} files ({total / 2**20:.1f} MiB) from {folder} "
          f"to https://huggingface.co/{repo}" + (f", tagged {revision}" if revision else ""), file=out)
    for f in files:
        print(f"  {f.stat().st_size / 2**20:8.2f} MiB  {f.relative_to(folder).as_posix()}", file=out)
    print("checks passed: loads strictly, no stale component, checksums match, cards and model-index "
          "match the results", file=out)
    if dry_run:
        return files
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo, private=private, exist_ok=True, repo_type="model")
    commit = api.upload_folder(repo_id=repo, folder_path=str(folder), repo_type="model",
                               commit_message=f"ism-defense: {folder.name}", ignore_patterns=[".*", "*/.*"])
    if revision:
        api.create_tag(repo, tag=revision, revision=commit.oid, repo_type="model",
                       tag_message=f"ism-defense {folder.name}")
    print(f"published {commit.commit_url}" + (f"; load it with load_defense({repo!r}, revision={revision!r})"
                                              if revision else ""), file=out)
    return files


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m ism.publish", description=__doc__.split("\n\n")[0])
    p.add_argument("folder", type=Path, help="a defense folder, e.g. weights/cifar10")
    p.add_argument("--repo", help="Hub model repo, OWNER/NAME")
    p.add_argument("--revision", help="tag the uploaded commit (a Space pins it with ISM_REVISION)")
    p.add_argument("--dry-run", action="store_true", help="check and list what would be sent; no network")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--update-card", action="store_true", help="rewrite the root card's model-index from --results")
    p.add_argument("--results", type=Path, action="append", help="evaluation result JSON (repeatable); "
                   "default results/<folder name>.json")
    a = p.parse_args(argv)
    try:
        if a.update_card:
            results = update_card(a.folder, a.results or [Path("results") / f"{a.folder.name}.json"])
            print(f"{a.folder / CARD_NAME}: model-index with {len(results)} figures")
        if a.repo:
            publish(a.folder, a.repo, a.revision, a.dry_run, a.private or None)
        elif not a.update_card:
            p.error("--repo OWNER/NAME is required (or --update-card)")
    except WeightsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
