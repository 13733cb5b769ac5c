"""The guide cannot drift from the code: every core it shows matches its file, every link resolves."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md"))
CORE = re.compile(r"# --- core ---\n(.*?)# --- end core ---", re.S)
INCLUDE = re.compile(r"<!-- core: (\S+) -->\n```python\n(.*?)```", re.S)
RECIPE_FILES = sorted((ROOT / "src/rlrecipes/recipes").glob("*.py")) + sorted(
    (ROOT / "src/rlrecipes/icemaze").glob("*.py")
)


def core_of(path: Path) -> str:
    match = CORE.search(path.read_text())
    assert match, f"{path} has no core markers"
    return match.group(1)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_included_cores_match_their_files(doc):
    for rel, shown in INCLUDE.findall(doc.read_text()):
        assert shown == core_of(ROOT / "src/rlrecipes" / rel), f"{doc.name} shows an outdated core of {rel}"


@pytest.mark.parametrize("path", [p for p in RECIPE_FILES if "# --- core ---" in p.read_text()], ids=lambda p: p.name)
def test_every_core_is_30_lines_or_fewer_and_shown_in_a_chapter(path):
    code_lines = [line for line in core_of(path).splitlines() if line.strip() and not line.strip().startswith("#")]
    assert len(code_lines) <= 30, f"{path.name}: core has {len(code_lines)} lines of code"
    rel = path.relative_to(ROOT / "src/rlrecipes").as_posix()
    assert any(f"<!-- core: {rel} -->" in d.read_text() for d in DOCS), f"no chapter in docs/ shows the core of {rel}"


@pytest.mark.parametrize("doc", DOCS + [ROOT / "README.md"], ids=lambda p: p.name)
def test_relative_links_resolve(doc):
    for target in re.findall(r"\]\(([^)#\s]+)[^)]*\)", doc.read_text()):
        if "://" not in target:
            assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"
