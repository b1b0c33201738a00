"""`pip install .` (issue 16): the installed package, not the checkout, serves `ism` and `train` in a
directory that is not the repository, README's Python example runs there on the installed weights,
and the console scripts exist."""
import os
import re
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    src, site = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("site")
    for name in ("ism", "train", "weights"):          # a copy, so the build leaves nothing in the checkout
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                           "--target", str(site), str(src)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    shutil.rmtree(src)                                  # nothing may still point at the sources
    return site


def _python(site, cwd, code):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def test_installed_package_imports_from_anywhere(installed, tmp_path):
    done = _python(installed, tmp_path, "import ism, train, train.robust, ism.app.demo, ism.publish; "
                   "print(ism.__file__); print(train.__file__)")
    assert done.returncode == 0, done.stderr[-2000:]
    assert all(line.startswith(str(installed)) for line in done.stdout.split()), done.stdout
    for script in ("ism-train", "ism-evaluate", "ism-gallery", "ism-publish"):
        assert (installed / "bin" / script).is_file(), script


def test_readme_python_example_runs_outside_the_repo(installed, tmp_path):
    example = re.findall(r"```python\n(.+?)```", (ROOT / "README.md").read_text(), re.S)[0]
    assert 'load_defense("weights/cifar10")' in example
    done = _python(installed, tmp_path, example + "\nimport ism.defense as m; print('FROM', m.resolve_weights("
                   "'weights/cifar10', None))")
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"FROM {installed}" in done.stdout          # the installed copy of the weights
    assert not (tmp_path / "weights").exists()
