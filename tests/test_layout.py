"""The package layout holds: one subpackage per stage, imports pointing one way only, and every
stage reached from outside through the names its __init__ exports."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "benchmark"
CORE = "core"  # config, errors, seeding, exports: what every stage may use
# Which stages each stage may import from. Data flows data -> models -> evaluation -> training
# -> sweeps (training ends by evaluating, so it uses evaluation); records is the base every stage
# writes through; the report reads records only; the oracle drives training and evaluation.
ALLOWED = {
    CORE: set(),
    "records": {CORE},
    "data": {CORE, "records"},
    "models": {CORE},
    "evaluation": {CORE, "records", "data", "models"},
    "training": {CORE, "records", "data", "models", "evaluation"},
    "oracle": {CORE, "records", "data", "models", "evaluation", "training", "report"},
    "sweeps": {CORE, "records", "data", "evaluation", "training"},
    "report": {CORE, "records"},
}
TOP_LEVEL = {"cli", "__main__", "api"}  # the command line and the Python API: import any stage


def stage_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) >= 2 and parts[1] in ALLOWED:
        return parts[1]
    return parts[1] if len(parts) >= 2 and parts[1] in TOP_LEVEL else CORE


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "py2" not in p.parts)


def imports_of(path: Path) -> list[tuple[str, list[str], int]]:
    """(module, names, line) of every `from benchmark... import names`, including those inside
    functions (the lazy imports count too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and (
                node.module == "benchmark" or node.module.startswith("benchmark.")):
            found.append((node.module, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("benchmark."):
                    found.append((alias.name, [], node.lineno))
    return found


def test_every_module_belongs_to_a_known_stage():
    for path in package_modules():
        relative = path.relative_to(PACKAGE)
        if len(relative.parts) > 1:
            assert relative.parts[0] in ALLOWED, f"{relative}: not a stage of ALLOWED"


def test_imports_point_one_way_between_stages():
    wrong = []
    for path in package_modules():
        mine = stage_of(module_name(path))
        if mine in TOP_LEVEL:
            continue
        for module, _, line in imports_of(path):
            theirs = stage_of(module)
            if theirs != mine and theirs not in ALLOWED[mine]:
                wrong.append(f"{path.relative_to(PACKAGE)}:{line} ({mine}) imports {module}")
    assert not wrong, "imports against the stage order:\n" + "\n".join(wrong)


def test_other_stages_use_only_a_stage_packages_exported_names():
    wrong = []
    for path in package_modules():
        mine = stage_of(module_name(path))
        for module, names, line in imports_of(path):
            theirs = stage_of(module)
            if theirs in (mine, CORE) or mine == CORE or theirs in TOP_LEVEL:
                continue
            where = f"{path.relative_to(PACKAGE)}:{line}"
            if module != f"benchmark.{theirs}":
                wrong.append(f"{where} reaches into {module}; import from benchmark.{theirs}")
                continue
            exported = importlib.import_module(module).EXPORTS
            wrong.extend(f"{where} imports {name}, which {module} does not export"
                         for name in names if name not in exported)
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("stage", sorted(set(ALLOWED) - {CORE}))
def test_each_exported_name_is_defined_where_its_package_says(stage):
    if not (PACKAGE / stage / "__init__.py").exists():
        pytest.skip(f"no {stage} package in this checkout")
    package = importlib.import_module(f"benchmark.{stage}")
    assert package.__doc__ and package.__doc__.strip(), f"benchmark.{stage} has no docstring"
    for name, module in package.EXPORTS.items():
        defining = importlib.import_module(f"benchmark.{stage}.{module}")
        assert name in vars(defining), f"benchmark.{stage}.{module} does not define {name}"
        assert getattr(package, name) is vars(defining)[name]
    with pytest.raises(AttributeError, match="has no attribute"):
        package.no_such_name  # noqa: B018 - the lookup itself is the test


def test_no_import_cycle_between_modules():
    graph: dict[str, set[str]] = {}
    for path in package_modules():
        targets = set()
        for module, names, _ in imports_of(path):
            package_dir = PACKAGE.parent.joinpath(*module.split("."))
            exports = {}
            if (package_dir / "__init__.py").exists():
                exports = getattr(importlib.import_module(module), "EXPORTS", {})
            for name in names or [None]:
                if name is not None and (package_dir / f"{name}.py").exists():
                    targets.add(f"{module}.{name}")  # a submodule: `from package import module`
                elif name in exports:
                    targets.add(f"{module}.{exports[name]}")  # resolved by the lazy export
                else:
                    targets.add(module)
        graph[module_name(path)] = targets
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join([*trail, node, nxt]))
            if nxt in graph and state.get(nxt) is None:
                visit(nxt, [*trail, node])
        state[node] = 2

    for node in sorted(graph):
        if state.get(node) is None:
            visit(node, [])


def test_test_modules_have_unique_basenames():
    """pytest imports test modules by basename (no packages here): two test_x.py under tests/
    stop the collection of the whole tree, as `pytest -m cuda` (doctor, gpu-check) collects it."""
    tests = Path(__file__).resolve().parent
    seen: dict[str, Path] = {}
    clashes = []
    for path in sorted(tests.rglob("test_*.py")):
        if path.name in seen:
            clashes.append(f"{seen[path.name].relative_to(tests)} and {path.relative_to(tests)}")
        else:
            seen[path.name] = path
    assert not clashes, "same basename: " + "; ".join(clashes)
