"""Imports flow down the layers of DESIGN.md; simpy, pyomo and dask stay in their layers."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "simgrid"

# A module may import simgrid modules of a strictly lower rank (or its own subpackage).
RANK = {
    "errors": -1,
    "ncio": 1,
    "types": 0,
    "config": 1,
    "matpower": 1,
    "profiles": 1,
    "network": 2,
    "aiload": 2,
    "powerflow": 3,
    "metrics": 3,
    "scenarios": 3,
    "fcm": 3,
    "basecase": 4,
    "optimization": 4,
    "cosim": 5,
    "runner": 6,
    "report": 6,
    "stats": 1,
    "provenance": 2,
    "units": 2,
    "inputs": 4,
    "allocate": 7,
    "evaluate": 8,
    "cli": 9,
    "__init__": 0,
}
ONLY_IN = {
    "simpy": {"cosim"},
    "pyomo": {"optimization"},
    "dask": {"runner"},
    "pandapower": {"network", "powerflow"},
    "lightsim2grid": {"powerflow"},
}


def _top(path: Path) -> str:
    rel = path.relative_to(PKG)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            # a name that is a module of simgrid (`from simgrid.optimization import lpfirst`)
            names.update(
                f"{node.module}.{a.name}"
                for a in node.names
                if (PKG.parent / node.module.replace(".", "/") / f"{a.name}.py").is_file()
            )
    return names


def test_every_module_has_a_rank():
    assert {_top(p) for p in PKG.rglob("*.py")} <= set(RANK)


def test_imports_flow_down_and_heavy_libraries_stay_in_their_layer():
    bad = []
    for path in PKG.rglob("*.py"):
        me = _top(path)
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] == "simgrid" and len(parts) > 1:
                other = parts[1]
                if other != me and other != "__init__" and RANK[other] >= RANK[me]:
                    bad.append(f"{path.relative_to(PKG)} imports {name}")
            elif parts[0] in ONLY_IN and me not in ONLY_IN[parts[0]]:
                bad.append(f"{path.relative_to(PKG)} imports {parts[0]}")
    assert bad == []


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def test_no_module_imports_another_that_imports_it_back():
    """No import cycle between simgrid's modules, not even through imports inside functions or
    under TYPE_CHECKING: each module has one job and the data flows one way."""
    modules = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        deps = set()
        for imported in _imports(path):
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            package = name if path.name == "__init__.py" else name.rpartition(".")[0]
            if imported and imported != name and imported != package:
                deps.add(imported)
        graph[name] = deps
    cycles = []

    def visit(node: str, stack: list[str], seen: set[str]) -> None:
        for dep in graph[node]:
            if dep in stack:
                cycles.append(" -> ".join([*stack[stack.index(dep) :], dep]))
            elif dep not in seen:
                seen.add(dep)
                visit(dep, [*stack, dep], seen)

    for start in graph:
        visit(start, [start], {start})
    assert sorted(set(cycles)) == [], sorted(set(cycles))
