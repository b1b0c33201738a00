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
CHECKSUMS_NAME = "checksums.json"   # at a defense's root: sha256 of every component's weights


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
            fields = cls.config_class.__dataclass_fields__
            try:
                model_kwargs["config"] = cls.config_class(**{k: v for k, v in cfg.items() if k in fields})
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


def sha256(path: str | Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def record_checksum(root: str | Path, folder: str | Path) -> None:
    """Record the sha256 of ``folder/model.safetensors`` in ``root/checksums.json`` (the training
    code calls this each time it publishes weights; ``verify_checksum`` checks them on load)."""
    root, folder = Path(root), Path(folder)
    manifest = root / CHECKSUMS_NAME
    sums = json.loads(manifest.read_text()) if manifest.is_file() else {}
    sums[(folder / WEIGHTS_NAME).relative_to(root).as_posix()] = sha256(folder / WEIGHTS_NAME)
    manifest.write_text(json.dumps(dict(sorted(sums.items())), indent=2) + "\n")


def verify_checksum(folder: str | Path) -> None:
    """Raise ``WeightsError`` if ``folder/model.safetensors`` differs from the sha256 recorded for
    it in a ``checksums.json`` of an enclosing defense folder (a tampered or corrupted file).
    Weights with no recorded checksum (a folder you assembled yourself) are not checked."""
    weights = Path(folder).resolve() / WEIGHTS_NAME
    for root in list(weights.parents)[1:4]:
        manifest = root / CHECKSUMS_NAME
        if not manifest.is_file():
            continue
        try:
            sums = json.loads(manifest.read_text())
        except json.JSONDecodeError as e:
            raise WeightsError(f"{manifest} is not valid JSON: {e}") from e
        expected = sums.get(weights.relative_to(root).as_posix())
        if expected is not None and sha256(weights) != expected:
            raise WeightsError(f"{weights} does not match the sha256 recorded in {manifest} when it was "
                               "trained: the file was modified or corrupted")
        return


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
