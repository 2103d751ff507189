"""benchmarks/transformers_memory.py at tiny sizes, and docs/memory.md's issue-30 table against its JSON."""
import json
from pathlib import Path

import pytest

from scripts import load_script

pytest.importorskip("transformers")
ROOT = Path(__file__).resolve().parents[1]


def _bench():
    return load_script("benchmarks/transformers_memory.py")


def test_the_benchmark_prints_kept_bytes_and_gradient_errors(tmp_path, capsys):
    out = tmp_path / "rows.json"
    _bench().main(["--seq-scale", str(1 / 32), "--json", str(out)])
    rows = json.loads(out.read_text())
    assert [r["model"] for r in rows] == ["gpt2", "bert", "llama"]
    for row in rows:
        assert 0 < row["dropit_int8_mib"] < row["plain_mib"]
        assert 0 < row["gradient_error_int8"] < 0.03
    assert "of plain" in capsys.readouterr().out


def test_the_docs_table_holds_the_committed_figures():
    rows = json.loads((ROOT / "docs" / "transformers" / "memory.json").read_text())
    page = (ROOT / "docs" / "memory.md").read_text()
    for row in rows:
        peak = row["step_peak_mib"]
        cells = (f"| {row['plain_mib']:.1f} | {row['dropit_int8_mib']:.1f} | {row['vs_plain']:.3f} | "
                 f"{row['gradient_error_int8']:.4f} | {peak['plain']:.1f} | {peak['dropit_int8']:.1f} | "
                 f"{peak['dropit_int8'] / peak['plain']:.3f} |")
        assert cells in page
        assert row["vs_plain"] <= 0.30  # the goal


def test_the_step_peak_runs_in_a_fresh_process_and_sees_the_step():
    bench = _bench()
    small, large = bench.step_peak("gpt2", 32, "plain"), bench.step_peak("gpt2", 256, "plain")
    assert 0 < small < large  # the peak of the step itself, not the process's earlier high-water mark


def test_the_timer_reports_a_ratio_with_quartiles_eager():
    t = _bench().step_times("llama", 16, rounds=2, compiled=False)
    assert t["q1"] <= t["ratio"] <= t["q3"] and t["ratio"] > 0 and t["rounds"] == 2 and t["step_s"] > 0
