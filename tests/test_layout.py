"""Imports run one way (issue 17): models at the bottom, the defense above them, attacks, then the
evaluation and the app on top; nothing imports a command-line module. Read from the source files."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# lowest first; a module may import its own layer or any layer below it
LAYERS = [
    ("base", ["ism.checks", "ism.hub", "ism.distributed", "ism.folders", "ism.data"]),
    ("models", ["ism.models"]),
    ("pipeline", ["ism.regenerate", "ism.counter", "ism.defense"]),
    ("attacks", ["ism.attacks"]),
    ("eval", ["ism.eval"]),
    ("app", ["ism.app"]),
    ("app tabs", ["ism.app.tabs"]),     # each tab lays out its widgets and wires them; nothing below imports them
    ("entry points", ["ism.eval.__main__", "ism.publish", "ism"]),
]
COMMANDS = {"ism.eval.command", "ism.eval.gallery", "ism.eval.__main__", "ism.publish"}   # have a main(); never imported
ENTRY_POINTS = {"ism.eval.__main__": "ism.eval.command"}


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


def test_app_is_load_build_launch_and_no_ui_function_is_long():
    """app.py stays load -> build tabs -> launch (at most 200 lines); no function that builds or serves the page
    (app.py, ism/app/) runs over 120 lines, so a tab can be read on one screen or two."""
    assert len((ROOT / "app.py").read_text().splitlines()) <= 200
    long = []
    for f in [ROOT / "app.py", *sorted((ROOT / "ism" / "app").rglob("*.py"))]:
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 120:
                long.append(f"{f.relative_to(ROOT)}:{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert long == []


def test_the_pipeline_diagram_text_fits_its_boxes():
    """Every box's words lie inside the box, drawn at the app's size, with the gate and without, for each picture
    the classifier may read; the diagram says which one it reads (regeneration beside the flow when it is not)."""
    import itertools

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from ism.app.diagram import FINAL, REGEN, pipeline_figure
    from ism.defense import FINAL_INPUTS

    for gate, final_input in itertools.product((True, False), FINAL_INPUTS):
        fig = pipeline_figure(gate, final_input)
        FigureCanvasAgg(fig).draw()
        r = fig.canvas.get_renderer()
        ax = fig.axes[0]
        boxes = {p.get_gid(): p.get_window_extent(r) for p in ax.patches if p.get_gid()}
        assert len(boxes) == (6 if gate else 5)
        assert FINAL[final_input] in boxes
        final, regen = boxes[FINAL[final_input]], boxes[REGEN]
        assert (regen.y1 < final.y0) == (final_input == "purified"), (gate, final_input)   # in the flow or below it
        for t in ax.texts:
            if t.get_gid() in boxes:
                inner, outer = t.get_window_extent(r), boxes[t.get_gid()]
                assert outer.x0 <= inner.x0 and inner.x1 <= outer.x1 and outer.y0 <= inner.y0 and inner.y1 <= outer.y1, \
                    t.get_text()


def test_the_apps_rooms_are_of_a_readable_size():
    """No file under ism/app runs over 400 lines (issue "a house to live in": ui.py had grown to 718)."""
    sizes = {str(f.relative_to(ROOT)): len(f.read_text().splitlines()) for f in (ROOT / "ism" / "app").rglob("*.py")}
    assert {f: n for f, n in sizes.items() if n > 400} == {}


def test_importing_and_building_the_app_writes_nothing_into_the_source_tree(tmp_path):
    """gradio writes a stub (.pyi) beside the source of every component subclass it sees defined; the app's
    tabs define one (Setting). Built in a fresh interpreter, the app leaves the tree as it was."""
    import subprocess
    import sys

    def tree():
        return {str(f.relative_to(ROOT)) for d in ("ism", "train") for f in (ROOT / d).rglob("*")
                if f.is_file() and "__pycache__" not in f.parts}

    before = tree()
    code = ("import app, ism.app.tabs.page, ism.app.tabs.attack; from ism.app.tabs.page import Setting; "
            "Setting(0, 1, label='x')")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=300,
                   env={**__import__("os").environ, "GRADIO_TEMP_DIR": str(tmp_path)})
    assert tree() - before == set()


def test_no_module_does_work_at_import():
    """Importing a module of ism/ or train/ defines things; it never runs a loop or a call for its effect (the
    probe scripts trained at import; they live in research/ now). ``__main__`` modules are the commands."""
    allowed_calls = {"register", "filterwarnings"}      # atexit.register, warnings.filterwarnings

    def called(node) -> str:
        f = node.value.func
        return f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "?")

    work = []
    for f in sorted([*(ROOT / "ism").rglob("*.py"), *(ROOT / "train").rglob("*.py")]):
        if f.name == "__main__.py":
            continue
        for node in ast.parse(f.read_text()).body:
            if isinstance(node, (ast.For, ast.While, ast.AsyncFor)) or (
                    isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and called(node) not in allowed_calls):
                work.append(f"{f.relative_to(ROOT)}:{node.lineno}")
    assert work == []
