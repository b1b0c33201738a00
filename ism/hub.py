"""Weights as Hub artefacts: config.json + model.safetensors + README.md model card.

``HubModule`` is the base of every component. It tightens ``PyTorchModelHubMixin`` in two ways
the defaults leave open: loading is ``strict=True`` (a missing or extra tensor is an error, never
silently random weights) and only ``model.safetensors`` is ever read (no pickle fallback).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import safetensors.torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CHECKSUMS_NAME = "checksums.json"   # at a defense's root: sha256 of every component's weights and config
LINEAGE_NAME = "lineage.json"       # at a defense's root: what each component was trained against


class WeightsError(ValueError):
    """A weights folder or file is missing, truncated or does not match its config."""


class HubModule(nn.Module, PyTorchModelHubMixin, library_name="ism-defense", tags=["adversarial-defense"]):
    config_class: type = None  # the component's @dataclass config; config.json rebuilds it

    @classmethod
    def _from_pretrained(cls, *, model_id, revision, cache_dir, force_download, local_files_only,
                         token, map_location="cpu", strict=True, **model_kwargs):
        if not os.path.isdir(model_id):
            from huggingface_hub import hf_hub_download

            model_id = os.path.dirname(hf_hub_download(
                repo_id=model_id, filename=WEIGHTS_NAME, revision=revision, cache_dir=cache_dir,
                force_download=force_download, token=token, local_files_only=local_files_only))
        path = Path(model_id)
        if not (path / CONFIG_NAME).is_file():
            raise WeightsError(f"{path / CONFIG_NAME} is missing")
        if not (path / WEIGHTS_NAME).is_file():
            raise WeightsError(f"{path / WEIGHTS_NAME} is missing (only safetensors weights are loaded)")
        verify_checksum(path)
        cfg = model_kwargs.get("config")
        if isinstance(cfg, dict):
            try:
                model_kwargs["config"] = strict_config(cls.config_class, cfg, path / CONFIG_NAME)
            except TypeError as e:
                raise WeightsError(f"{path / CONFIG_NAME} is not a valid {cls.config_class.__name__}: {e}") from e
        try:
            model = cls(**model_kwargs)
        except (TypeError, ValueError) as e:
            raise WeightsError(f"{path / CONFIG_NAME} describes no valid {cls.__name__}: {e}") from e
        try:
            state = safetensors.torch.load_file(str(path / WEIGHTS_NAME), device=str(map_location))
        except Exception as e:  # safetensors raises its own error types for truncated/corrupt files
            raise WeightsError(f"{path / WEIGHTS_NAME} is not a readable safetensors file: {e}") from e
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise WeightsError(f"{path / WEIGHTS_NAME} does not match {path / CONFIG_NAME}: {e}") from e
        return model.eval()


def strict_config(config_class: type, values: dict, source: str | Path):
    """``config_class(**values)``, where a key the dataclass does not have (a typo such as
    ``treshold``) is a ``WeightsError`` naming it instead of being dropped."""
    unknown = sorted(set(values) - set(config_class.__dataclass_fields__))
    if unknown:
        raise WeightsError(f"{source}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                           f"for {config_class.__name__} (known: {', '.join(config_class.__dataclass_fields__)})")
    return config_class(**values)


def sha256(path: str | Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def record_checksum(root: str | Path, folder_or_file: str | Path) -> None:
    """Record in ``root/checksums.json`` the sha256 of ``folder/model.safetensors`` and
    ``folder/config.json`` (or of one file, e.g. ``defense.json``). The training code calls this each
    time it publishes; ``verify_checksum`` checks them on load, so a changed threshold in a config is
    caught like a changed tensor."""
    root, target = Path(root), Path(folder_or_file)
    files = [target] if target.is_file() else [target / WEIGHTS_NAME, target / CONFIG_NAME]
    manifest = root / CHECKSUMS_NAME
    sums = json.loads(manifest.read_text()) if manifest.is_file() else {}
    for f in files:
        if f.is_file():
            sums[f.relative_to(root).as_posix()] = sha256(f)
    manifest.write_text(json.dumps(dict(sorted(sums.items())), indent=2) + "\n")


def _manifest_for(path: Path) -> tuple[Path, dict] | None:
    """(root, recorded sums) of the checksums.json of the defense folder enclosing ``path``."""
    for root in list(path.parents)[:3]:
        manifest = root / CHECKSUMS_NAME
        if manifest.is_file():
            try:
                return root, json.loads(manifest.read_text())
            except json.JSONDecodeError as e:
                raise WeightsError(f"{manifest} is not valid JSON: {e}") from e
    return None


def verify_file(path: str | Path) -> None:
    """Raise ``WeightsError`` if ``path`` differs from the sha256 recorded for it in the
    ``checksums.json`` of an enclosing defense folder (a tampered or corrupted file). Files with no
    recorded checksum (a folder you assembled yourself) are not checked."""
    path = Path(path).resolve()
    found = _manifest_for(path)
    if found is None:
        return
    root, sums = found
    expected = sums.get(path.relative_to(root).as_posix())
    if expected is not None and sha256(path) != expected:
        raise WeightsError(f"{path} does not match the sha256 recorded in {root / CHECKSUMS_NAME} when it was "
                           "trained: the file was modified or corrupted")


def verify_checksum(folder: str | Path) -> None:
    """``verify_file`` for a component folder's weights and config."""
    for name in (WEIGHTS_NAME, CONFIG_NAME):
        verify_file(Path(folder) / name)


def record_lineage(root: str | Path, artefact: str, against: dict[str, str]) -> None:
    """Record that ``artefact`` (a path under ``root``: ``detector/model.safetensors``,
    ``defense.json``) was trained against the files ``against`` ({path under root: sha256})."""
    manifest = Path(root) / LINEAGE_NAME
    lineage = json.loads(manifest.read_text()) if manifest.is_file() else {}
    lineage[artefact] = dict(sorted(against.items()))
    manifest.write_text(json.dumps(dict(sorted(lineage.items())), indent=2) + "\n")


def stale_components(root: str | Path) -> list[str]:
    """One sentence per component trained against weights that have changed since (for example
    the detector after ``python -m train robust`` replaced the ISM); [] when all match or when no
    lineage was recorded."""
    root = Path(root)
    manifest = root / LINEAGE_NAME
    if not manifest.is_file():
        return []
    out, sums = [], {}
    for artefact, against in json.loads(manifest.read_text()).items():
        changed = []
        for dep, expected in against.items():
            f = root / dep
            if dep not in sums:
                sums[dep] = sha256(f) if f.is_file() else None
            if sums[dep] != expected:
                changed.append(dep.removesuffix("/" + WEIGHTS_NAME))
        if changed:
            out.append(f"{artefact.removesuffix('/' + WEIGHTS_NAME)} was trained against another "
                       f"{', '.join(changed)} than the one now in {root}: retrain it "
                       "(python -m train all runs every stage in order)")
    return out


def write_card(folder: str | Path, *, title: str, summary: str, command: str, data: str,
               metrics: dict, extra: str = "") -> None:
    """Write the model card README.md next to the weights (overwrites the mixin's stub)."""
    import datetime
    import subprocess

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
    except Exception:
        commit = "unknown"
    rows = "\n".join(f"| {k} | {v} |" for k, v in metrics.items())
    text = f"""---
library_name: ism-defense
tags: [adversarial-defense, pytorch_model_hub_mixin]
---
# {title}

{summary}

## Training
- command: `{command}`
- data: {data}
- git commit (code before this training run): `{commit}`
- written: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}

## Measured metrics
| metric | value |
|---|---|
{rows}

{extra}
"""
    Path(folder, "README.md").write_text(text)
    Path(folder, "metrics.json").write_text(json.dumps(metrics, indent=2))
