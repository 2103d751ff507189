"""The README is a landing page: short, its links and the docs' links resolve, its Python runs as pasted."""
from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
# A ```python block whose first line is this comment is not run (say why after it): for code that needs data or a GPU.
SKIP_MARK = "# not run by tests/test_readme.py:"

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def python_blocks(text: str) -> list[str]:
    return [body for lang, body in FENCE.findall(text) if lang == "python"]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#{1,6} (.+)$", text, re.M):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text())
    text = re.sub(r"`[^`\n]*`", "", text)  # code spans are not links
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]


def test_readme_is_a_landing_page():
    lines = README.read_text().splitlines()
    assert len(lines) < 250, f"README.md has {len(lines)} lines; move write-ups to docs/"
    text = README.read_text()
    for needed in ("make test", "make reproduce", "docs/dropit.svg", "to_dropit", "<!-- table: headline"):
        assert needed in text


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    assert links(page), f"{page.name} links nowhere"
    broken = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no file {file.relative_to(ROOT) if ROOT in file.parents else file}")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading with anchor #{anchor} in {file.name}")
    assert not broken, f"{page.name}: " + "; ".join(broken)


def test_the_link_check_catches_a_broken_link_and_anchor(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Top\n\n[ok](#top) [bad](#nowhere) [gone](missing.md) `[not](a link)`\n")
    assert links(page) == ["#top", "#nowhere", "missing.md"]
    assert anchors(page) == {"top"}
    assert slug("Records, kernels and `torch.compile`") == "records-kernels-and-torchcompile"
    assert slug("Today's models") == "todays-models"


def test_readme_has_python_blocks_and_the_api_block_is_not_skipped():
    blocks = python_blocks(README.read_text())
    assert blocks, "the README shows no Python"
    api = [b for b in blocks if "to_dropit" in b]
    assert api and not any(b.startswith(SKIP_MARK) for b in api)


BLOCKS = [(page, i) for page in PAGES for i in range(len(python_blocks(page.read_text())))]


@pytest.mark.parametrize("page, index", BLOCKS, ids=[f"{p.relative_to(ROOT)}-{i}" for p, i in BLOCKS])
def test_python_block_runs_as_pasted(page, index):
    """Each block runs top to bottom in a fresh namespace, as a user pasting it would."""
    block = python_blocks(page.read_text())[index]
    if block.startswith(SKIP_MARK):
        pytest.skip(block.splitlines()[0].removeprefix(SKIP_MARK).strip())
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(block, f"{page.name} python block {index}", "exec"), {"__name__": "__readme__"})


def test_make_targets_named_in_the_docs_exist():
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    named = {t for page in PAGES for t in re.findall(r"`make ([\w-]+)", page.read_text())}
    named |= {t for page in PAGES for body in FENCE.findall(page.read_text())
              for t in re.findall(r"^make ([\w-]+)", body[1], re.M)}
    assert named >= {"test", "reproduce"}
    assert not named - targets, f"no Makefile target for: {sorted(named - targets)}"
