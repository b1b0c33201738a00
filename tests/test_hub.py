"""Weights as Hub artefacts: local round trip, offline Hub cache, and clear errors on bad files."""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import CELEBA_WEIGHTS, ROOT, WEIGHTS, tiny_parts

from ism import Classifier, ISMNetwork, WeightsError, load_defense


def test_round_trip_every_component(tmp_path):
    x = torch.rand(3, 3, 32, 32)
    for name, m in tiny_parts().items():
        m.eval()
        m.save_pretrained(tmp_path / name, config=m.config)
        files = sorted(p.name for p in (tmp_path / name).iterdir())
        assert files == ["README.md", "config.json", "model.safetensors"], files
        back = type(m).from_pretrained(str(tmp_path / name))
        assert back.config == m.config
        inp = torch.randn(3, m.config.latent_dim) if name == "generator" else x
        a, b = m(inp), back(inp)
        for u, v in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
            torch.testing.assert_close(u, v)


def test_load_defense_local(tiny_weights):
    d = load_defense(tiny_weights)
    assert d.classes == [f"c{i}" for i in range(10)]
    assert d.predict(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_missing_truncated_and_mismatched_weights(tiny_weights):
    folder = tiny_weights / "classifier"
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="model.safetensors"):
        Classifier.from_pretrained(str(folder))
    (folder / "model.safetensors").unlink()
    torch.save(tiny_parts()["classifier"].state_dict(), folder / "pytorch_model.bin")
    with pytest.raises(WeightsError, match="only safetensors"):  # never falls back to pickle
        load_defense(tiny_weights)
    (folder / "model.safetensors").write_bytes(data)
    good = (folder / "config.json").read_text()
    cfg = json.loads(good)
    cfg["hidden"] = 32  # config no longer matches the tensors
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(WeightsError, match="does not match"):
        load_defense(tiny_weights)
    (folder / "config.json").write_text(good)
    assert load_defense(tiny_weights) is not None
    shutil.rmtree(tiny_weights / "discriminator")     # the GAN's training partner: not part of the pipeline
    assert not hasattr(load_defense(tiny_weights), "discriminator")
    shutil.rmtree(tiny_weights / "detector")
    with pytest.raises(WeightsError, match="detector"):
        load_defense(tiny_weights)


def test_not_a_weights_folder(tmp_path):
    with pytest.raises(WeightsError, match="defense.json"):
        load_defense(tmp_path)
    with pytest.raises(WeightsError, match="not a weights folder"):
        load_defense(tmp_path / "nope" / "deeper")


def _hub_cache(cache, repo_id, src):
    """Lay ``src`` out as the Hub cache would after a download of ``repo_id`` at main."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    shutil.copytree(src, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    return commit


def _run_offline(cache, code):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "HF_HOME": str(cache.parent / "home")}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("src", ["tiny", "shipped"])
def test_load_from_offline_hub_cache(tmp_path, tiny_weights, src):
    weights = tiny_weights if src == "tiny" else WEIGHTS
    commit = _hub_cache(tmp_path / "hub", "someone/ism-cifar10", weights)
    r = _run_offline(tmp_path / "hub", f"""
        import torch
        from ism import load_defense
        d = load_defense("someone/ism-cifar10")
        d2 = load_defense("someone/ism-cifar10", revision="{commit}")
        x = torch.rand(2, 3, 32, 32)
        assert torch.equal(d.classifier(x), d2.classifier(x))
        print("classes", len(d.classes))
        """)
    assert r.returncode == 0, r.stderr
    assert "classes 10" in r.stdout


def test_tampered_weights_are_refused(tiny_weights):
    from ism.hub import record_checksum

    for name in ("classifier", "ism", "detector", "generator", "discriminator"):
        record_checksum(tiny_weights, tiny_weights / name)
    assert load_defense(tiny_weights) is not None
    f = tiny_weights / "ism" / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[-3] ^= 0x01                     # one bit of one weight: still a valid safetensors file
    f.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=r"ism/model.safetensors does not match the sha256 .*modified or corrupted"):
        load_defense(tiny_weights)
    with pytest.raises(WeightsError, match="modified or corrupted"):
        ISMNetwork.from_pretrained(str(tiny_weights / "ism"))
    data[-3] ^= 0x01
    f.write_bytes(bytes(data))
    assert load_defense(tiny_weights) is not None


@pytest.mark.parametrize("root", [WEIGHTS, WEIGHTS.parent / "cifar10-paper", CELEBA_WEIGHTS,
                                  CELEBA_WEIGHTS.parent / "celeba-paper"])
def test_every_shipped_weight_file_has_a_recorded_checksum(root):
    from ism.hub import sha256, stale_components

    if not root.is_dir():
        pytest.skip(f"{root} not present")
    sums = json.loads((root / "checksums.json").read_text())
    files = {p.relative_to(root).as_posix() for p in root.rglob("model.safetensors")}
    configs = {p.relative_to(root).as_posix() for p in root.rglob("config.json") if (p.parent / "model.safetensors").is_file()}
    assert set(sums) == files | configs | {"defense.json"}
    assert stale_components(root) == [] and (root / "lineage.json").is_file()
    assert all(sha256(root / rel) == h for rel, h in sums.items())


@pytest.mark.slow
@pytest.mark.parametrize("repo,revision,cached", [("nobody/not-there", "v9", False),
                                                   ("someone/ism-cifar10", "v2.0", True)])
def test_unknown_repo_or_revision_offline_is_a_clear_error(tmp_path, tiny_weights, repo, revision, cached):
    (tmp_path / "hub").mkdir()
    if cached:   # the repo is in the cache, that revision is not
        _hub_cache(tmp_path / "hub", repo, tiny_weights)
    r = _run_offline(tmp_path / "hub", f"""
        from ism import load_defense, WeightsError
        try:
            load_defense("{repo}", revision="{revision}")
        except WeightsError as e:
            print("ERR", e)
        """)
    assert r.returncode == 0, r.stderr
    assert f"ERR could not load Hub repo '{repo}' (revision {revision})" in r.stdout


def test_half_precision_weights(tiny_weights):
    """train.half stores every float tensor as float16, updates the checksums, and the defense still
    loads (strictly, checksums verified) and gives nearly the same outputs."""
    import safetensors.torch

    from ism import load_defense
    from ism.hub import record_checksum
    from train.half import halve

    for name in ("classifier", "ism", "detector", "generator", "discriminator"):
        record_checksum(tiny_weights, tiny_weights / name)
    x = torch.rand(4, 3, 32, 32)
    before = load_defense(tiny_weights)
    with torch.no_grad():
        ref, pur = before.predict(x), before.purify(x)
    halve(tiny_weights)
    state = safetensors.torch.load_file(str(tiny_weights / "ism" / "model.safetensors"))
    assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float16}
    after = load_defense(tiny_weights)          # the checksums were updated: no WeightsError
    assert next(after.parameters()).dtype == torch.float32
    with torch.no_grad():
        assert torch.allclose(after.predict(x), ref, atol=1e-2) and torch.allclose(after.purify(x), pur, atol=1e-2)


@pytest.mark.slow
def test_half_refuses_when_accuracy_moves(tiny_weights):
    """With a tolerance no change can meet, nothing is rewritten and the command fails."""
    import pytest
    from conftest import DATA

    from ism.hub import record_lineage, sha256
    from train.half import main

    _record_all(tiny_weights)
    ism = "ism/model.safetensors"
    record_lineage(tiny_weights, "detector/model.safetensors", {ism: sha256(tiny_weights / ism)})
    files = {p: p.read_bytes() for p in tiny_weights.rglob("*") if p.is_file()}   # weights, checksums, lineage
    with pytest.raises(SystemExit):
        main([str(tiny_weights), "--data", str(DATA), "--max-drop", "-1"])
    assert {p: p.read_bytes() for p in tiny_weights.rglob("*") if p.is_file()} == files


def _record_all(root):
    from ism.hub import record_checksum

    for name in ("classifier", "ism", "detector", "generator", "discriminator"):
        record_checksum(root, root / name)
    record_checksum(root, root / "defense.json")


@pytest.mark.parametrize("file", ["detector/config.json", "defense.json"])
def test_an_unknown_config_key_is_an_error_naming_it(tiny_weights, file):
    (tiny_weights / "checksums.json").unlink()     # a folder assembled by hand: no recorded checksums
    f = tiny_weights / file
    cfg = json.loads(f.read_text())
    cfg["treshold"] = 0.5
    f.write_text(json.dumps(cfg))
    with pytest.raises(WeightsError, match="unknown key 'treshold'"):
        load_defense(tiny_weights)


@pytest.mark.parametrize("file, key", [("detector/config.json", "threshold"), ("defense.json", "gate")])
def test_a_changed_config_is_caught_like_a_changed_tensor(tiny_weights, file, key):
    _record_all(tiny_weights)
    sums = json.loads((tiny_weights / "checksums.json").read_text())
    assert file in sums
    load_defense(tiny_weights)
    f = tiny_weights / file
    cfg = json.loads(f.read_text())
    cfg[key] = not cfg[key] if isinstance(cfg[key], bool) else cfg[key] + 0.1
    f.write_text(json.dumps(cfg))
    with pytest.raises(WeightsError, match=f"{file} does not match the sha256"):
        load_defense(tiny_weights)


def test_components_trained_against_replaced_weights_are_reported(tiny_weights):
    import warnings

    from ism.defense import StaleWeightsWarning
    from ism.hub import record_lineage, sha256
    from train.half import halve

    _record_all(tiny_weights)
    ism = "ism/model.safetensors"
    record_lineage(tiny_weights, "detector/model.safetensors", {ism: sha256(tiny_weights / ism)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_defense(tiny_weights).stale == []
    halve(tiny_weights, only=["ism"])        # float16 copy: the same weights, the lineage follows
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_defense(tiny_weights).stale == []
    other = ISMNetwork(ISMNetwork.from_pretrained(str(tiny_weights / "ism")).config)   # retrained: new weights
    other.save_pretrained(tiny_weights / "ism", config=other.config)
    _record_all(tiny_weights)
    with pytest.warns(StaleWeightsWarning, match="detector was trained against another ism"):
        d = load_defense(tiny_weights)
    assert len(d.stale) == 1


def test_a_training_stage_without_its_inputs_is_a_weights_error(tmp_path):
    from train.__main__ import main

    with pytest.raises(WeightsError, match="run `python -m train classifier` first"):
        main(["detector", "--out", str(tmp_path / "w"), "--limit", "40", "--ckpt-dir", str(tmp_path / "c"),
              "--val-per-class", "2", "--no-bf16"])


def test_regeneration_checks_its_input_at_the_call(tiny_defense):
    from ism.regenerate import regenerate_steps

    with pytest.raises(ValueError):
        tiny_defense.regenerate_steps(torch.rand(2, 3, 7, 7))          # no next(): the call itself raises
    with pytest.raises(ValueError):
        tiny_defense.regenerate(torch.rand(2, 3, 32, 32), steps=-1)
    with pytest.raises(ValueError, match="steps >= 0"):
        regenerate_steps(tiny_defense.generator, torch.rand(1, 3, 32, 32), steps=-1)
