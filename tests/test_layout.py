"""Imports run one way (issue 17): models at the bottom, the defense above them, attacks, then the
evaluation and the app on top; nothing imports a command-line module. Read from the source files."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# lowest first; a module may import its own layer or any layer below it
LAYERS = [
    ("base", ["ism.checks", "ism.hub", "ism.distributed", "ism.folders", "ism.data"]),
    ("models", ["ism.models"]),
    ("pipeline", ["ism.regenerate", "ism.defense"]),
    ("attacks", ["ism.attacks"]),
    ("eval", ["ism.eval"]),
    ("app", ["ism.app"]),
    ("entry points", ["ism.evaluate", "ism.gallery", "ism.publish", "ism"]),
]
COMMANDS = {"ism.eval.command", "ism.eval.gallery", "ism.evaluate", "ism.gallery", "ism.publish"}   # have a main(); never imported
ENTRY_POINTS = {"ism.evaluate": "ism.eval.command", "ism.gallery": "ism.eval.gallery"}


def layer(module: str) -> int:
    best = None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if module == p or module.startswith(p + "."):
                if best is None or len(p) > best[1]:
                    best = (i, len(p))
    assert best is not None, f"{module} belongs to no layer"
    return best[0]


def modules():
    for f in sorted((ROOT / "ism").rglob("*.py")):
        parts = f.relative_to(ROOT).with_suffix("").parts
        yield (".".join(parts[:-1]) if parts[-1] == "__init__" else ".".join(parts)), f


def imports(f: Path, known=()):
    for node in ast.walk(ast.parse(f.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:          # `from ism import distributed` imports the module ism.distributed
                sub = f"{node.module}.{a.name}"
                yield sub if sub in known else node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names)


def violations():
    known = {m for m, _ in modules()}
    for mod, f in modules():
        for target in imports(f, known):
            if target not in known or target == mod:
                continue
            if target in COMMANDS and ENTRY_POINTS.get(mod) != target:
                yield f"{mod} imports the command-line module {target}"
            elif layer(target) > layer(mod):
                yield f"{mod} ({LAYERS[layer(mod)][0]}) imports {target} ({LAYERS[layer(target)][0]}), a layer above it"


def test_imports_run_one_way():
    assert list(violations()) == []


def test_the_check_sees_a_violation(tmp_path, monkeypatch):
    """The check itself can fail: a models module importing the app is reported."""
    bad = ROOT / "ism" / "models" / "_layout_probe.py"
    bad.write_text("from ism.app.demo import run_demo\n")
    try:
        assert any("ism.models._layout_probe" in v for v in violations())
    finally:
        bad.unlink()


def test_train_is_not_imported_by_ism():
    for mod, f in modules():
        assert not any(t == "train" or t.startswith("train.") for t in imports(f)), mod


def test_no_pyplot_state_in_the_server():
    """Figures are matplotlib.figure.Figure objects: pyplot's global figure registry would grow with every
    page load and run, and is shared between visitors."""
    files = [f for _, f in modules()] + [ROOT / "app.py"]
    assert [str(f) for f in files if "matplotlib.pyplot" in set(imports(f))] == []
