"""Publishing to the Hub (issue 16): the dry run checks the shipped folders and sends nothing; a
folder that would mislead (tampered weights, a figure not in its results, a missing card) is refused
with the reason; a real run creates the repo, uploads the folder and tags it (a fake HfApi here:
no network)."""
import json
import shutil

import conftest
import huggingface_hub
import pytest

from ism.hub import WeightsError
from ism.publish import check_folder, main, publish, update_card

ROOT = conftest.ROOT
SHIPPED = sorted(p for p in (ROOT / "weights").iterdir() if (p / "defense.json").is_file())


class NoNetwork:
    def __init__(self, *a, **k):
        raise AssertionError("the dry run must not reach the Hub")


@pytest.fixture
def copy(tmp_path):
    dst = tmp_path / "cifar10"
    shutil.copytree(ROOT / "weights" / "cifar10", dst)
    return dst


@pytest.mark.parametrize("folder", SHIPPED, ids=[p.name for p in SHIPPED])
def test_every_shipped_defense_passes_the_dry_run(folder, monkeypatch, capsys):
    monkeypatch.setattr(huggingface_hub, "HfApi", NoNetwork)
    monkeypatch.chdir(ROOT)
    files = publish(folder, "owner/ism-" + folder.name, revision="v1", dry_run=True, root=ROOT)
    names = {f.relative_to(folder).as_posix() for f in files}
    assert {"defense.json", "checksums.json", "README.md", "classifier/model.safetensors",
            "generator/model.safetensors"} <= names
    out = capsys.readouterr().out
    assert "would send" in out and "checks passed" in out and "tagged v1" in out


def test_shipped_cards_carry_the_measured_figures():
    card = huggingface_hub.ModelCard.load(ROOT / "weights" / "cifar10" / "README.md")
    figures = {r.metric_args["key"]: r.metric_value for r in card.data.eval_results}
    measured = json.loads((ROOT / "results" / "cifar10.json").read_text())
    assert figures["autoattack/defense"] == measured["autoattack"]["defense"]
    assert figures["clean/pipeline"] == measured["clean"]["pipeline"]
    assert all(r.dataset_type == "cifar10" and r.task_type == "image-classification" for r in card.data.eval_results)


def test_a_tampered_config_is_refused(copy):
    cfg = copy / "detector" / "config.json"
    cfg.write_text(cfg.read_text().replace('"threshold"', '"threshold" ', 1))   # same values, other bytes
    problems = check_folder(copy, ROOT)
    assert any("detector/config.json does not match its recorded sha256" in p for p in problems), problems


def test_a_figure_not_in_the_results_is_refused(copy):
    card = copy / "README.md"
    text = card.read_text()
    assert "value: 0.344" in text
    card.write_text(text.replace("value: 0.344", "value: 0.544"))
    problems = check_folder(copy, ROOT)
    assert len(problems) == 1 and "holds 0.344" in problems[0], problems
    with pytest.raises(WeightsError, match="not ready to publish"):
        publish(copy, "owner/name", dry_run=True, root=ROOT)


def test_missing_card_and_unrecorded_weights_are_refused(copy):
    (copy / "ism" / "README.md").unlink()
    shutil.copytree(copy / "ism", copy / "extra")
    problems = check_folder(copy, ROOT)
    assert "ism/README.md is missing" in problems and "extra/model.safetensors has no recorded sha256" in problems


def test_update_card_writes_a_model_index_from_results(copy, tmp_path):
    results = {"dataset": "celeba", "clean": {"images": 50, "pipeline": 0.9},
               "adaptive": {"pgd@0.0314": {"defense": 0.5, "images": 20}}}
    bigger = {"dataset": "celeba", "clean": {"images": 500, "pipeline": 0.95}}
    # a gray-box evaluation of its own that measured fooled / caught / restored (results/<key>-graybox-caught-*.json)
    caught = {"dataset": "celeba", "clean": {"images": 100}, "graybox": {"pgd@0.0314": {
        "defense": 0.88, "fooled": 0.4, "caught": 0.99, "restored": 0.828, "images": 100}}}
    for name, r in (("a", results), ("b", bigger), ("c", caught)):
        (tmp_path / f"{name}.json").write_text(json.dumps(r))
    written = update_card(copy, [tmp_path / f"{n}.json" for n in "abc"], root=tmp_path)
    got = {r.metric_args["key"]: (r.metric_value, r.metric_args["results"]) for r in written}
    assert got == {"clean/pipeline": (0.95, "b.json"), "adaptive/pgd@0.0314/defense": (0.5, "a.json"),
                   "graybox/pgd@0.0314/defense": (0.88, "c.json"), "graybox/pgd@0.0314/caught": (0.99, "c.json"),
                   "graybox/pgd@0.0314/restored": (0.828, "c.json")}
    restored = next(r for r in written if r.metric_args["key"].endswith("restored"))
    assert restored.metric_name.startswith("of the images gray-box PGD-10 (L-inf 8/255) turns from right to wrong, "
                                           "the share the defense answers right again (100 test images)")
    assert check_folder(copy, tmp_path) == []
    assert "# ISM defense for CIFAR-10" in (copy / "README.md").read_text()   # the card's text is kept


def test_the_card_names_the_autoattack_that_ran(tmp_path):
    """On two classes the evaluation runs AutoAttack's APGD-CE and Square only: the card's figure says so."""
    from ism.publish import eval_results

    for name, version in (("ten", "standard"), ("two", "APGD-CE + Square (two classes)")):
        (tmp_path / f"{name}.json").write_text(json.dumps({"dataset": "celeba", "autoattack": {
            "images": 100, "version": version, "defense": 0.01, "no_defense": 0.0}}))
    ten, two = ({r.metric_args["key"]: r.metric_name for r in eval_results([tmp_path / f"{n}.json"], tmp_path)}
                for n in ("ten", "two"))
    assert ten["autoattack/defense"].startswith("AutoAttack (standard, L-inf 8/255) through the whole defense")
    assert two["autoattack/no_defense"].startswith("AutoAttack (APGD-CE + Square, the standard version's attacks for "
                                                   "two classes, L-inf 8/255) on the classifier alone")


def test_publish_creates_uploads_and_tags(copy, monkeypatch, capsys):
    calls = []

    class FakeApi:
        def __init__(self, token=None):
            calls.append(("init", token))

        def create_repo(self, repo_id, **kw):
            calls.append(("create_repo", repo_id, kw["exist_ok"]))

        def upload_folder(self, **kw):
            calls.append(("upload_folder", kw["repo_id"], kw["folder_path"]))
            return type("Commit", (), {"oid": "abc123", "commit_url": "https://hf.co/owner/name/commit/abc123"})()

        def create_tag(self, repo_id, tag, revision, **kw):
            calls.append(("create_tag", repo_id, tag, revision))

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    publish(copy, "owner/name", revision="v2", token="t", root=ROOT)
    assert calls == [("init", "t"), ("create_repo", "owner/name", True), ("upload_folder", "owner/name", str(copy)),
                     ("create_tag", "owner/name", "v2", "abc123")]
    assert "revision='v2'" in capsys.readouterr().out


def test_cli_reports_one_clear_error(copy, capsys):
    assert main([str(copy), "--repo", "not-a-repo-id", "--dry-run"]) == 1
    assert "expected OWNER/NAME" in capsys.readouterr().err
    (copy / "defense.json").write_text("{}")
    assert main([str(copy), "--repo", "owner/name", "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert "defense.json does not match its recorded sha256" in err and "Traceback" not in err
