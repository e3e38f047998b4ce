"""The layout holds: packages by concern, arrows one way, no import cycles.

Read from the source with ``ast`` (every import, at module level or inside a
function), so an import hidden in a function to dodge a cycle is still seen.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "lockgate"
#: The shared leaves at the top; every other module sits in a concern's folder.
LEAVES = {"__init__", "errors", "problems", "bodies", "config", "views"}
#: A package may import only these lockgate packages (besides the leaves).
ALLOWED = {
    "auth": set(),
    "versioning": set(),
    "openapi": {"versioning", "auth"},
    "runtime": {"versioning", "auth"},
    "serving": {"runtime"},
    "client": {"runtime"},
    "jobs": {"runtime", "auth", "versioning"},
    "fleet": {"auth", "versioning", "openapi", "runtime", "serving", "jobs"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every ``lockgate`` module ``path`` imports, resolved to absolute names."""
    tree = ast.parse(path.read_text())
    package = (
        module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    )
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("lockgate"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.startswith(("lockgate", "services")):
                # ``from . import middleware`` imports the submodule.
                submodules = [
                    f"{target}.{alias.name}"
                    for alias in node.names
                    if (SRC.parent / Path(*target.split("."), f"{alias.name}.py")).exists()
                ]
                found.update(submodules or [target])
    own = module_name(path)
    # A module's own ancestors are initialised before it: importing them is no cycle.
    return {name for name in found if not own.startswith(name + ".")}


MODULES = {module_name(path): path for path in SRC.rglob("*.py")}
GRAPH = {name: imports(path) for name, path in MODULES.items()}


def concern(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (SRC / parts[1]).is_dir()) else None


def test_every_module_sits_in_a_concern_folder_or_is_a_shared_leaf() -> None:
    loose = [p.stem for p in SRC.glob("*.py") if p.stem not in LEAVES]
    assert loose == []
    assert set(ALLOWED) <= {p.name for p in SRC.iterdir() if p.is_dir() and p.name != "__pycache__"}


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_each_folder_states_its_rule_at_its_top(package: str) -> None:
    docstring = ast.get_docstring(ast.parse((SRC / package / "__init__.py").read_text())) or ""
    readme = SRC / package / "README.md"
    assert "rule" in docstring.lower() or readme.exists()


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_arrows_point_one_way(package: str) -> None:
    wrong = sorted(
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        if concern(module) == package
        for target in targets
        if target.startswith("services")
        or (
            (other := concern(target)) is not None
            and other != package
            and other not in ALLOWED[package]
        )
    )
    assert wrong == []


def test_leaves_import_only_leaves() -> None:
    wrong = sorted(
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        if module.count(".") == 1 and concern(module) is None and module != "lockgate"
        for target in targets
        if concern(target) is not None
    )
    assert wrong == []


def test_no_import_cycles() -> None:
    """Between modules (a package's ``__init__`` counts as the package)."""
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(GRAPH.get(node, ())):
            if target not in MODULES or target == "lockgate":
                continue
            if state.get(target) == 1:
                cycles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target, stack)
        stack.pop()
        state[node] = 2

    for name in sorted(MODULES):
        if name not in state:
            visit(name, [])
    assert cycles == []
