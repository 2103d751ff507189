"""One instrument for each kind of figure, checked on the source: one timer computes quartiles, one runner sets
the allocator's environment for a fresh process, no benchmark defines a model or touches the library's strategy
table; and the instruments themselves (the fresh process, the peer, the README's compile line in the speed table)."""
import ast
import copy
import os
import re
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import dropit

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted([*(ROOT / "dropit").rglob("*.py"), *(ROOT / "benchmarks").glob("*.py"), *(ROOT / "docs").glob("*.py")])
BENCHMARKS = sorted((ROOT / "benchmarks").glob("*.py"))
QUANTILE_CALLS = {"quantiles", "quantile", "nanquantile", "percentile", "nanpercentile"}
MODEL_BUILDERS = {"Sequential", "VisionTransformer", "ResNet", "resnet18", "resnet50", "vit_b_16", "vit_b_32"}
MUTATORS = {"setdefault", "update", "pop", "popitem", "clear", "__setitem__", "__delitem__"}


def _tree(path: Path) -> ast.AST:
    return ast.parse(path.read_text(), str(path))


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _called_name(node: ast.Call) -> str:
    f = node.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


def sets_mmap_threshold(tree: ast.AST) -> bool:
    """A dict key, a keyword argument or an environ subscript named MALLOC_MMAP_THRESHOLD_ (docstrings don't count)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict) and any(isinstance(k, ast.Constant) and k.value == "MALLOC_MMAP_THRESHOLD_"
                                              for k in node.keys):
            return True
        if isinstance(node, ast.keyword) and node.arg == "MALLOC_MMAP_THRESHOLD_":
            return True
        if (isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant)
                and node.slice.value == "MALLOC_MMAP_THRESHOLD_"):
            return True
    return False


def computes_quantiles(tree: ast.AST) -> bool:
    return any(isinstance(n, ast.Call) and _called_name(n) in QUANTILE_CALLS for n in ast.walk(tree))


def defines_a_model(tree: ast.AST) -> list[str]:
    """Classes deriving from a Module, and calls that build a network (nn.Sequential, torchvision's models)."""
    found = [f"class {n.name}" for n in ast.walk(tree) if isinstance(n, ast.ClassDef)
             and any(_dotted(b).split(".")[-1] == "Module" for b in n.bases)]
    found += [f"{_dotted(n.func)}()" for n in ast.walk(tree) if isinstance(n, ast.Call)
              and (_called_name(n) in MODEL_BUILDERS or _dotted(n.func).startswith("torchvision.models"))]
    return found


def mutates_strategies(tree: ast.AST) -> list[str]:
    def is_table(node):
        return _dotted(node).split(".")[-1] == "STRATEGIES"

    found = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Subscript) and isinstance(n.ctx, (ast.Store, ast.Del)) and is_table(n.value):
            found.append(f"line {n.lineno}: STRATEGIES[...] assigned or deleted")
        if (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in MUTATORS
                and is_table(n.func.value)):
            found.append(f"line {n.lineno}: STRATEGIES.{n.func.attr}()")
    return found


def test_the_checks_see_what_they_look_for():
    assert sets_mmap_threshold(ast.parse('env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")'))
    assert sets_mmap_threshold(ast.parse('ENV = {"MALLOC_MMAP_THRESHOLD_": "65536"}'))
    assert sets_mmap_threshold(ast.parse('os.environ["MALLOC_MMAP_THRESHOLD_"] = "1"'))
    assert not sets_mmap_threshold(ast.parse('"""with MALLOC_MMAP_THRESHOLD_=65536"""'))
    assert computes_quantiles(ast.parse("q = statistics.quantiles(ts, n=4)"))
    assert computes_quantiles(ast.parse("q = np.percentile(ts, 25)"))
    assert defines_a_model(ast.parse("class Net(nn.Module): pass")) == ["class Net"]
    assert defines_a_model(ast.parse("m = torchvision.models.resnet18(num_classes=100)"))
    assert mutates_strategies(ast.parse("STRATEGIES.setdefault('x', s)"))
    assert mutates_strategies(ast.parse("dropit.STRATEGIES['x'] = s"))
    assert not mutates_strategies(ast.parse("keep = STRATEGIES['mink'](x, 0.9)"))


def test_one_file_sets_the_allocators_threshold_for_a_fresh_process():
    setters = [_rel(p) for p in SOURCES if sets_mmap_threshold(_tree(p))]
    assert setters == ["dropit/lab/measure/process.py"]


def test_at_most_one_file_computes_quartiles():
    assert [_rel(p) for p in SOURCES if computes_quantiles(_tree(p))] == ["dropit/timing.py"]


def test_no_model_is_defined_in_the_benchmarks():
    found = {_rel(p): d for p in BENCHMARKS if (d := defines_a_model(_tree(p)))}
    assert not found, f"benchmarks build their models from dropit.lab.models (the catalog or the zoo): {found}"


def test_no_benchmark_touches_the_librarys_strategy_table():
    found = {_rel(p): m for p in BENCHMARKS if (m := mutates_strategies(_tree(p)))}
    assert not found, found
    before = dict(dropit.STRATEGIES)
    from benchmarks import speed

    list(speed.configurations(nn.Sequential(nn.Linear(4, 4)), 0.9, list(speed.PEERS) + ["mink"], False))
    assert dropit.STRATEGIES == before and not set(speed.PEERS) & set(dropit.STRATEGIES)


def test_the_speed_tables_compiled_dropit_row_is_the_readmes_compile_line():
    readme = (ROOT / "README.md").read_text()
    # the model in channels_last, inductor's layout for CPU convolutions, then DropIT, then compile
    line = ("compiled = torch.compile(dropit.to_dropit(model.to(memory_format=torch.channels_last), gamma=0.9), "
            "fullgraph=True)")
    assert line in readme.splitlines(), "the README's compile line"
    from benchmarks import speed

    row = next(c for c in speed.candidates(0.9, compiled=True) if c.name == "default, compiled")
    assert (row.gamma, row.quantize, row.strategy) == (0.9, None, dropit.DEFAULT_STRATEGY)
    assert row.compiled and row.fullgraph and row.channels_last and row.budget is None
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    row.build(model)  # in place, as the README's line: the weights in channels_last, the layers converted
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last) and model[0].weight.stride()[1] == 1
    assert [name for name, _, _ in dropit.converted_modules(model)] == ["0", "1"]  # the conv, its ReLU's mask


@pytest.mark.slow
def test_a_fresh_process_has_its_own_pid_and_the_allocators_environment():
    from dropit.lab.measure.process import ENV, in_fresh_process

    assert in_fresh_process("os:getenv", key="MALLOC_MMAP_THRESHOLD_") == ENV["MALLOC_MMAP_THRESHOLD_"]
    assert in_fresh_process("os:getpid") != os.getpid()
    with pytest.raises(RuntimeError, match="failed in its fresh process"):
        in_fresh_process("os:nonesuch")


@pytest.mark.slow
def test_forward_rows_name_resident_growth_and_saved_bytes_apart():
    from dropit.lab.measure.resident import forward_row

    plain, drop = (forward_row("tiny", v, gamma=0.9) for v in ("plain", "dropit"))
    assert {"growth_bytes", "meter_bytes"} <= set(plain) and plain["variant"] == "plain"
    assert 0 < drop["meter_bytes"] < plain["meter_bytes"] and drop["growth_bytes"] > 0


def test_the_published_peer_selects_over_the_whole_input_and_keeps_the_input_gradient_exact():
    from dropit.lab.measure.peers import global_topk

    torch.manual_seed(0)
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    x = torch.randn(2, 3, 8, 8)

    def grads(model):
        xi = x.clone().requires_grad_()
        model(xi).square().sum().backward()
        return xi.grad, [p.grad for p in model.parameters()]

    gx, gp = grads(plain)
    same_x, same_p = grads(global_topk(copy.deepcopy(plain), 0.0))  # nothing dropped: exact
    torch.testing.assert_close(same_x, gx) and [torch.testing.assert_close(a, b) for a, b in zip(same_p, gp)]
    drop_x, drop_p = grads(global_topk(copy.deepcopy(plain), 0.9))
    torch.testing.assert_close(drop_x, gx)  # the input gradient needs the weight only
    assert not torch.allclose(drop_p[0], gp[0])  # the weight gradient is taken from the kept 10%


BINOMIAL_SE = re.compile(r"sqrt\(\s*p\s*\*\s*\(\s*1(?:\.0)?\s*-\s*p\s*\)")


def test_the_standard_error_of_a_top1_is_computed_in_one_place():
    assert BINOMIAL_SE.search("return 100 * math.sqrt(p * (1 - p) / n)")
    assert not BINOMIAL_SE.search("is sqrt(p (1 - p) / n) in points")  # prose does not count
    found = [_rel(p) for p in SOURCES if BINOMIAL_SE.search(p.read_text())]
    assert found == ["dropit/lab/stats.py"], found
