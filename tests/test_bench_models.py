"""benchmarks/models.py: the --quantize check and the table it prints."""
import pytest

import dropit
from benchmarks import models as bench


def test_quantize_levels_checked_before_any_row():
    bench.check_quantize([])  # nothing asked: nothing to check
    bench.check_quantize(list(dropit.QUANTIZE_LEVELS))
    with pytest.raises(SystemExit, match=r"--quantize int3: unknown level; choose from int8,int4"):
        bench.check_quantize(["int8", "int3"])


def test_markdown_one_block_per_model():
    rows = [dict(model="gpt2", config="4 layers", variant=v, meter_bytes=b * 2**20, rss_growth_bytes=b * 2**20, meter_ratio=b / 100,
                 rss_ratio=b / 100) for v, b in (("plain", 100), ("dropit", 85), ("quantize=int8", 50))]
    md = bench.markdown(rows).splitlines()
    assert md[2] == "| gpt2 | 4 layers | plain | 100.0 | 1.000 | 100.0 | 1.000 |"
    assert md[3] == "|  |  | `to_dropit(model, gamma=0.9)` | 85.0 | 0.850 | 85.0 | 0.850 |"
    assert md[4].startswith("|  |  | `quantize=int8` | 50.0 | 0.500 |")
