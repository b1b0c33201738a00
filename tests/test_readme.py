"""README stays true: its Python example runs, and CI runs exactly its test command."""
import re

import pytest
from conftest import ROOT

pytestmark = pytest.mark.slow


def _readme():
    return (ROOT / "README.md").read_text()


def test_ci_runs_the_readme_test_command():
    m = re.search(r"Run the tests.*?```bash\n(.+?)\n```", _readme(), re.S)
    assert m, "README has no 'Run the tests' bash block"
    assert m.group(1).strip() in (ROOT / ".ci" / "run").read_text()


def test_readme_python_example_runs(monkeypatch):
    monkeypatch.chdir(ROOT)
    blocks = re.findall(r"```python\n(.+?)```", _readme(), re.S)
    assert blocks, "README has no python example"
    exec(compile(blocks[0], "README.md", "exec"), {})
