"""docs/layout.md names every module of the package and every benchmark, each under its own folder."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _sections(text: str) -> dict[str, str]:
    """The layout's tree block as {folder path: the text of its lines, its subfolders' included}.

    A line whose first word ends in ``/`` opens that folder, inside the folders of smaller indent above it.
    """
    block = text.split("```")[1]
    sections: dict[str, list[str]] = {}
    open_: list[tuple[int, str]] = []  # (indent, folder path) from the root down
    for line in block.splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        first = line.split()[0]
        if first.endswith("/"):
            while open_ and open_[-1][0] >= indent:
                open_.pop()
            path = (open_[-1][1] if open_ else "") + first
            open_.append((indent, path))
            sections[path] = []
        elif open_ and indent <= open_[-1][0]:  # a line at a folder's own indent that opens nothing: leave it
            while open_ and open_[-1][0] >= indent:
                open_.pop()
        for _, path in open_:
            sections[path].append(line)
    return {path: "\n".join(lines) for path, lines in sections.items()}


def test_the_layout_names_every_module_and_benchmark_under_its_folder():
    sections = _sections((ROOT / "docs" / "layout.md").read_text())
    files = sorted([*(ROOT / "dropit").rglob("*.py"), *(ROOT / "benchmarks").glob("*.py")])
    assert len(files) > 60
    missing = []
    for path in files:
        rel = path.relative_to(ROOT)
        folder = "".join(f"{p}/" for p in rel.parts[:-1])
        text = sections.get(folder, "")
        if not re.search(rf"(?<![\w.]){re.escape(path.name)}\b", text):
            missing.append(str(rel))
    assert not missing, f"docs/layout.md does not name these under their folder: {', '.join(missing)}"


def test_the_check_sees_a_file_named_only_under_another_folder():
    text = "```\ndropit/\n  a.py   one\n  lab/\n    b.py  two\nbenchmarks/  c.py\n```\n"
    sections = _sections(text)
    assert "a.py" in sections["dropit/"] and "b.py" in sections["dropit/lab/"]
    assert "a.py" not in sections["dropit/lab/"] and "c.py" in sections["benchmarks/"]
    assert "b.py" not in sections["benchmarks/"]
