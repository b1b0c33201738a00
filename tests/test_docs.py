"""The front door stays a front door: README is short, and every relative link in README and docs/ resolves
(to a file, and to a heading when it names one)."""
import re
from pathlib import Path

from conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# every text that explains a result: the pages, the results' own reports, the research notes, the model cards
TEXTS = [*PAGES, *sorted((ROOT / "results").glob("*.md")), *sorted((ROOT / "research").glob("*.md")),
         *sorted((ROOT / "benchmarks").rglob("*.md")), *sorted((ROOT / "weights").glob("*/README.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {slug(m) for m in re.findall(r"^#+ (.+)$", text, re.M)}


def links(page: Path):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    for target in LINK.findall(text):
        if not re.match(r"[a-z]+:", target):        # http:, https:, mailto: are not checked here
            yield target


def test_every_relative_link_resolves():
    """In README, docs/ and the results' reports: a superseded result removed from results/ (git keeps it) leaves
    no link behind."""
    broken = []
    for page in TEXTS:
        for target in links(page):
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)
    assert sum(1 for p in PAGES for _ in links(p)) > 20      # the check saw the links


def test_readme_is_a_front_door():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 300
    first_image = LINK.search(text)
    assert first_image and first_image.group(0).startswith("![") and (ROOT / first_image.group(1)).is_file()
    for page in ("app", "api", "training", "results", "publishing", "design"):
        assert f"docs/{page}.md" in text


def test_slug_matches_github():
    assert slug("CelebA (Male, 64x64): the paper's Table 4") == "celeba-male-64x64-the-papers-table-4"
    assert slug("From Python, with `gradio_client`") == "from-python-with-gradio_client"


def test_every_result_file_is_named_by_the_text_that_explains_it():
    """No file in results/ or benchmarks/results/ that nothing explains (an evaluation's report names its raw
    results and figures, ism/eval/report.py: files_line); superseded runs are removed, not kept beside."""
    texts = {page: page.read_text() for page in TEXTS}
    files = sorted(f for d in ("results", "benchmarks/results") for f in (ROOT / d).iterdir() if f.is_file())
    unnamed = [str(f.relative_to(ROOT)) for f in files if not any(f.name in t for page, t in texts.items() if page != f)]
    assert unnamed == []
    assert len(files) > 40        # the check saw the files
