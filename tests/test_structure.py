"""The shape of the package, checked: no import cycle, short functions, a torch-only core.

Imports are read from the source (an AST walk), those inside functions
included, so a cycle hidden in a function body counts too. ``from pkg import
name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg``; a
submodule importing its own parent package's ``__init__`` is not an edge (the
parent runs first anyway).
"""
import ast
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "dropit"
LAB = PKG / "lab"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in PKG.rglob("*.py")}
TREES = {name: ast.parse(path.read_text(), str(path)) for name, path in MODULES.items()}


def _is_package(name: str) -> bool:
    return MODULES.get(name, Path()).name == "__init__.py"


def _absolute(name: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = name.split(".") if _is_package(name) else name.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _targets(name: str, node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        pkg = _absolute(name, node)
        return [f"{pkg}.{a.name}" if f"{pkg}.{a.name}" in MODULES else pkg for a in node.names]
    return []


def _edges() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, tree in TREES.items():
        for node in ast.walk(tree):
            for target in _targets(name, node):
                while target and target not in MODULES:  # a name inside a module: the module
                    target = target.rpartition(".")[0]
                if target and target != name and not name.startswith(target + "."):
                    graph[name].add(target)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def test_the_walk_sees_imports_inside_functions_and_relative_ones():
    graph = _edges()
    assert "dropit.lab.plots" in graph["dropit.lab.reproduce.report"]  # imported inside build()
    assert "dropit.strategies" in graph["dropit.convert"]  # from .strategies import ...
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycle_inside_dropit():
    cycle = _cycle(_edges())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def _functions(root: Path):
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield f"{path.relative_to(ROOT)}:{node.lineno} {node.name}", node.end_lineno - node.lineno + 1


def test_no_function_in_dropit_longer_than_80_lines():
    long = {f: n for f, n in _functions(PKG) if n > 80}
    assert not long, long


def test_no_function_in_the_lab_longer_than_60_lines():
    long = {f: n for f, n in _functions(LAB) if n > 60}
    assert not long, long


def _module_level(body: list[ast.stmt]):
    """Statements run at import: the module's own, and those inside its if/try blocks (not in functions or classes)."""
    for node in body:
        yield node
        if isinstance(node, (ast.If, ast.Try)):
            for block in (node.body, node.orelse, getattr(node, "finalbody", []),
                          *[h.body for h in getattr(node, "handlers", [])]):
                yield from _module_level(block)


def test_the_core_imports_only_torch_and_the_standard_library_at_module_level():
    # triton is torch's own compiler dependency; only the CUDA kernels module imports it, and only on CUDA
    allowed = set(sys.stdlib_module_names) | {"torch", "triton", "dropit", "__future__"}
    bad = {}
    for name, tree in TREES.items():
        if name.startswith("dropit.lab"):
            continue
        for node in _module_level(tree.body):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                targets = [node.module or ""]
            else:
                continue
            bad.update({name: t for t in targets if t.split(".")[0] not in allowed})
    assert not bad, f"the core imports more than torch and the standard library at module level: {bad}"


# The lab's layers, lowest first: a module may import from its own layer or a lower one, never a higher.
LAB_LAYERS = [
    {"io", "units", "paper", "download", "stats"},  # leaves: files, MiB, the paper's numbers, fetching, statistics
    {"models"},
    {"data"},  # the default image size is a model's and dataset's rule (models.catalog)
    {"train"},
    {"measure"},
    {"plots"},
    {"claim"},
    {"reproduce"},
    {"notebook"},
]


def _lab_layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[:2] != ["dropit", "lab"] or len(parts) < 3:
        return None
    for rank, names in enumerate(LAB_LAYERS):
        if parts[2] in names:
            return rank
    raise AssertionError(f"{module} is in no layer of LAB_LAYERS: add its group there")


def test_the_lab_imports_point_down_its_layers():
    up = sorted(f"{a} -> {b}" for a, targets in _edges().items() for b in targets
                if _lab_layer(a) is not None and _lab_layer(b) is not None and _lab_layer(b) > _lab_layer(a))
    assert not up, "imports pointing up the lab's layers (see LAB_LAYERS): " + "; ".join(up)
    assert _lab_layer("dropit.lab.train.loop") > _lab_layer("dropit.lab.data.datasets")
