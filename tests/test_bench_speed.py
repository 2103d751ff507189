"""benchmarks/speed.py: which configurations a run times, and the rows it returns (and --json writes)."""
import torch
import torch.nn as nn

import dropit
from benchmarks import speed


def _names(**kw):
    base = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4, 5))  # built, never run
    return dict(speed.configurations(base, 0.9, ("mink",), **kw))


def test_quantize_rows_replace_the_strategies_eager_and_compiled():
    configs = _names(compiled=True, quantize=True)
    levels = list(dropit.QUANTIZE_LEVELS)
    assert list(configs) == ["plain", "default (sampled)", *[f"default + {q}" for q in levels],
                             "plain, compiled", *(["plain NCHW, compiled"] if torch.backends.mkldnn.is_available() else []),
                             "default, compiled", *[f"+ {q}, compiled" for q in levels]]
    compiled = [m for k, m in configs.items() if k.endswith("compiled")]
    assert len({id(m) for m in compiled}) == len(compiled)  # one compiled module per row


def test_strategy_rows_without_quantize():
    assert list(_names(compiled=False)) == ["plain", "default (sampled)", "mink"]


def test_importing_the_benchmark_leaves_the_strategies_alone():
    assert "global-topk" not in dropit.STRATEGIES


def test_rows_name_each_configuration_with_its_reference_and_ratio(capsys):
    torch.manual_seed(0)
    base = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    x, y = torch.randn(2, 3, 8, 8), torch.randint(0, 5, (2,))
    rows = speed.bench_model("tiny", base, x, y, 0.9, 2, torch.device("cpu"), (), quantize=True)
    assert [r["configuration"] for r in rows] == ["plain", "default (sampled)", *[f"default + {q}" for q in dropit.QUANTIZE_LEVELS]]
    assert rows[0]["ratio"] == 1.0 and all(r["reference"] == "plain" and r["step_ms"] > 0 for r in rows)
    assert all(r["q1"] <= r["ratio"] <= r["q3"] for r in rows) and rows[1]["ratio_to_default"] == 1.0
    assert "default + int8" in capsys.readouterr().out
