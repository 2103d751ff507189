"""The docs' tables are what docs/make_pages.py renders from docs/data/*.json, and a changed figure is caught."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from scripts import load_script

ROOT = Path(__file__).resolve().parents[1]


def _make_pages():
    return load_script("docs/make_pages.py")


make_pages = _make_pages()


def _copy(tmp_path: Path) -> Path:
    """README.md and docs/ (pages and data) in a temporary root."""
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    shutil.copytree(ROOT / "docs", tmp_path / "docs", ignore=shutil.ignore_patterns("*.png", "*.svg", "__pycache__"))
    return tmp_path


def test_every_table_matches_its_json():
    assert make_pages.stale_pages(ROOT) == [], "run: python docs/make_pages.py"
    assert make_pages.main(["--check"]) == 0


def test_pages_hold_tables_and_every_data_file_is_used_and_sourced():
    specs = [m["spec"] for p in make_pages.pages(ROOT) for m in make_pages.MARKER.finditer(p.read_text())]
    assert len(specs) >= 13
    used = {f for spec in specs for f in spec.split()[1:]}
    for path in sorted((ROOT / "docs" / "data").glob("*.json")):
        doc = json.loads(path.read_text())
        assert f"docs/data/{path.name}" in used, f"{path.name} renders no table"
        assert doc.get("source") and doc.get("rows"), f"{path.name} needs a 'source' and its 'rows'"


def test_a_number_changed_in_the_json_is_caught(tmp_path, capsys):
    root = _copy(tmp_path)
    data = root / "docs" / "data" / "frontier.json"
    doc = json.loads(data.read_text())
    row = next(r for r in doc["rows"] if r["config"] == "DropIT")
    row["kept_ratio"] = 0.5  # was 0.606
    data.write_text(json.dumps(doc))
    assert make_pages.main(["--check", "--root", str(root)]) == 1
    out = capsys.readouterr().out
    assert "docs/frontier.md" in out and "README.md" in out  # the headline table reads the same file
    make_pages.main(["--root", str(root)])  # rewriting fixes both
    assert make_pages.main(["--check", "--root", str(root)]) == 0
    assert f"| DropIT | {row['kept_bytes'] / 2**20:.1f} | 0.500 |" in (root / "docs" / "frontier.md").read_text()


def test_a_number_edited_by_hand_in_a_page_is_caught(tmp_path, capsys):
    root = _copy(tmp_path)
    page = root / "docs" / "memory.md"
    text = page.read_text()
    assert "| 348.7 | 0.608 |" in text
    page.write_text(text.replace("| 348.7 | 0.608 |", "| 348.7 | 0.580 |"))
    assert make_pages.main(["--check", "--root", str(root)]) == 1
    assert "docs/memory.md" in capsys.readouterr().out
    assert make_pages.main(["--check", "--root", str(ROOT)]) == 0  # the checkout itself is untouched


def test_wrap_keeps_labels_and_records_the_source(tmp_path):
    root = _copy(tmp_path)
    rows = json.loads((root / "docs" / "data" / "frontier.json").read_text())["rows"][:2]
    raw = tmp_path / "raw.json"
    raw.write_text(json.dumps(rows))
    make_pages.main(["--root", str(root), "wrap", "frontier", str(raw), "--source", "measured today on a test"])
    doc = json.loads((root / "docs" / "data" / "frontier.json").read_text())
    assert doc["source"] == "measured today on a test" and doc["rows"] == rows and "resnet18-cifar" in doc["labels"]
    raw.write_text(json.dumps({"not": "rows"}))
    with pytest.raises(SystemExit, match="expected the list of rows"):
        make_pages.main(["--root", str(root), "wrap", "frontier", str(raw), "--source", "x"])


def test_a_bad_marker_names_the_problem(tmp_path):
    with pytest.raises(SystemExit, match="no '<!-- /table -->' line"):
        make_pages.rendered("<!-- table: frontier docs/data/frontier.json -->\n| old |\n", ROOT)
    with pytest.raises(SystemExit, match="unknown table renderer 'nosuch'"):
        make_pages.render_spec("nosuch docs/data/frontier.json", ROOT)
    with pytest.raises(SystemExit, match="no file docs/data/missing.json"):
        make_pages.render_spec("frontier docs/data/missing.json", ROOT)


def test_the_headline_takes_compiled_frontier_rows_when_the_frontier_has_them():
    frontier = json.loads((ROOT / "docs" / "data" / "frontier.json").read_text())
    compiled = json.loads((ROOT / "docs" / "data" / "speed_compiled.json").read_text())
    frontier["rows"] = [r for r in frontier["rows"] if r["config"] != "compiled checkpoint every block"]
    row = next(r for r in frontier["rows"] if r["model"] == "resnet18-cifar" and r["config"] == "checkpoint every block")
    eager = f"| checkpoint every block | {row['kept_ratio']:.2f} | {row['peak_ratio']:.2f} | {row['time_ratio']:.3f}x "
    before = make_pages.render_headline(frontier, compiled)
    assert eager in before and before.split(eager)[1].split("\n")[0].endswith("| not measured |")
    frontier["rows"].append({**row, "config": "compiled checkpoint every block", "time_ratio": 1.25,
                             "time_q1": 1.2, "time_q3": 1.3})
    after = make_pages.render_headline(frontier, compiled)
    assert after.split(eager)[1].split("\n")[0].endswith("| 1.250x (1.20-1.30) |")
    assert after.count("\n") == before.count("\n")  # compiled rows fill the column, they add no line


def test_speed_companions_table_puts_each_ratio_under_its_column():
    def row(config, ratio, ms=100.0):
        return {"model": "resnet18", "batch": 32, "configuration": config, "step_ms": ms, "ratio": ratio,
                "q1": ratio - 0.01, "q3": ratio + 0.01}

    doc = {"labels": {"resnet18": "CIFAR ResNet-18"},
           "rows": [row("plain", 1.0, 590), row("default (sampled)", 1.07), row("plain, compiled", 1.0, 1592),
                    row("default, compiled", 1.05), row("+ int8, compiled", 1.11)]}
    text = make_pages.render_speed_companions(doc)
    head, rule, line = text.splitlines()
    assert head.split(" | ")[1:4] == ["eager DropIT", "eager + int8", "eager + int4"]
    cells = [c.strip() for c in line.strip("| ").split(" | ")]
    assert cells[0] == "CIFAR ResNet-18, batch 32 (plain 590 ms, compiled 1.59 s)"
    assert cells[1:] == ["1.070x (1.06-1.08)", "-", "-", "1.050x (1.04-1.06)", "1.110x (1.10-1.12)", "-", "-"]


def test_compiled_frontier_table_sets_models_side_by_side():
    def row(model, config, kept, peak, t):
        return {"model": model, "config": config, "compiled": config.startswith("compiled"), "kept_ratio": kept,
                "peak_ratio": peak, "time_ratio": t, "time_q1": t - 0.01, "time_q3": t + 0.01}

    doc = {"labels": {"a": "A", "b": "B"},
           "rows": [row("a", "plain", 1, 1, 1), row("a", "compiled plain", 1, 1, 1), row("a", "compiled budget 0.5", 0.5, 0.7, 1.05),
                    row("b", "compiled plain", 1, 1, 1), row("b", "compiled DropIT", 0.6, 0.7, 0.98)]}
    lines = make_pages.render_frontier_compiled(doc).splitlines()
    assert lines[0] == "| compiled (fullgraph) | A: kept | A: step peak | A: step time | B: kept | B: step peak | B: step time |"
    assert lines[2:] == ["| plain | 1.00 | 1.00 | 1.000x | 1.00 | 1.00 | 1.000x |",
                         "| budget 0.5 | 0.50 | 0.70 | 1.050x (1.04-1.06) | - | - | - |",
                         "| DropIT | - | - | - | 0.60 | 0.70 | 0.980x (0.97-0.99) |"]
