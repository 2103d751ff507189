"""benchmarks/speed.py: which configurations a run times."""
import torch.nn as nn

import dropit
from benchmarks import speed


def _names(**kw):
    base = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(5))
    return dict(speed.configurations(base, 0.9, ("mink",), **kw))


def test_quantize_rows_replace_the_strategies_eager_and_compiled():
    configs = _names(compiled=True, quantize=True)
    levels = list(dropit.QUANTIZE_LEVELS)
    assert list(configs) == ["plain", "default (sampled)", *[f"default + {q}" for q in levels],
                             "plain, compiled", "default, compiled", *[f"+ {q}, compiled" for q in levels]]
    compiled = [m for k, m in configs.items() if k.endswith("compiled")]
    assert len({id(m) for m in compiled}) == len(compiled)  # one compiled module per row


def test_strategy_rows_without_quantize():
    assert list(_names(compiled=False)) == ["plain", "default (sampled)", "mink"]


def test_importing_the_benchmark_leaves_the_strategies_alone():
    assert "global-topk" not in dropit.STRATEGIES
