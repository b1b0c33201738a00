"""torchrun on CPU (gloo, 2 processes) on tiny real data: the evaluation's merged result equals the
single-process one, and data-parallel training keeps its replicas in step and writes its weights once."""
import json
import os
import subprocess
import sys

import conftest
import pytest

pytestmark = pytest.mark.slow

SKIP_KEYS = {"seconds", "wall_seconds_this_run", "command", "processes"}


def _strip(o):
    if isinstance(o, dict):
        return {k: _strip(v) for k, v in o.items() if k not in SKIP_KEYS}
    if isinstance(o, list):
        return [_strip(v) for v in o]
    return o


def _run(args, cwd, processes: int):
    env = {**os.environ, "PYTHONPATH": str(conftest.ROOT), "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
                "--standalone"] if processes > 1 else [sys.executable]
    done = subprocess.run([*launcher, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.mark.parametrize("processes", [2])
def test_evaluation_under_torchrun_equals_one_process(tmp_path, processes):
    args = ["-m", "ism.eval", "--dataset", "cifar10", "--limit", "4", "--weights", str(conftest.WEIGHTS),
            "--data", str(conftest.DATA), "--batch-size", "2", "--adaptive-eps", "8/255", "--eps", "8/255", "--small",
            "--threads", "1", "--sections", "graybox,adaptive,regeneration"]   # (every section shards the same way)
    results = {}
    for n in (1, processes):
        cwd = tmp_path / f"p{n}"
        cwd.mkdir()
        _run([*args, "--out", str(cwd / "results")], cwd, n)
        results[n] = json.loads((cwd / "results" / "cifar10-limit4.json").read_text())
    assert results[processes]["processes"] == processes and results[1]["processes"] == 1
    assert results[1]["clean"]["images"] == 4 and len(results[1]["graybox"]) == 2   # FGSM, PGD
    assert {"adaptive", "regeneration"} <= set(results[1])
    assert _strip(results[processes]) == _strip(results[1])


def test_training_under_torchrun(tmp_path):
    out = tmp_path / "w" / "cifar10"
    _run(["-m", "train", "classifier", "--data", str(conftest.DATA), "--limit", "120", "--epochs", "0.05",
          "--out", str(out), "--ckpt-dir", str(tmp_path / "ckpt"), "--batch-size", "16", "--val-per-class", "2",
          "--no-bf16", "--threads", "1"], tmp_path, 2)
    card = (out / "classifier" / "README.md").read_text()
    assert "by 2 processes" in card          # written once, by process 0, after the replicas were compared
    from ism import Classifier

    clf = Classifier.from_pretrained(str(out / "classifier"))
    assert clf.config.class_names[0] == "airplane"
    log = (tmp_path / "ckpt" / "logs" / "cifar10-classifier.jsonl").read_text().splitlines()
    assert log and len(log) == len(set(log))   # one process logs, no duplicated lines
