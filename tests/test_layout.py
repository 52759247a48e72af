"""The layout of `distill/`: subpackages in rings along the data path, imports only downward, modules of one size,
every module name once, and a README that names every subpackage."""
from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "distill"
# Package -> ring. A module may import its own package and packages of lower rings only: never a higher ring, never
# a sibling of its own ring (teachers and models know nothing of each other; neither do deploy and superb).
RINGS = {
    "distill.io": 0,
    "distill.nn": 1,
    "distill.corpora": 1,
    "distill.teachers": 2,
    "distill.models": 2,
    "distill.training": 3,
    "distill.deploy": 4,
    "distill.superb": 4,
    "gendistiller_upstream": 4,
    "distill.commands": 5,
    "distill.cli": 6,
}
MAX_LINES = 500


@functools.cache
def _modules() -> dict[str, Path]:
    found = {}
    for folder in (LIBRARY, ROOT / "gendistiller_upstream"):
        for path in folder.rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _package(module: str) -> str | None:
    matches = [name for name in RINGS if module == name or module.startswith(name + ".")]
    return max(matches, key=len) if matches else None


def _imports(path: Path, module: str, top_level_only: bool = False) -> set[str]:
    """Absolute names of the project modules `path` imports (inside functions too, unless `top_level_only`)."""
    known = set(_modules())
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if node.level:  # relative import
                base = ".".join(module.split(".")[: -node.level] + [node.module])
            submodules = {f"{base}.{alias.name}" for alias in node.names} & known
            names.update(submodules or {base})  # `from package import module` imports the module, not the package
    return {name for name in names if name.split(".")[0] in ("distill", "gendistiller_upstream")}


def test_every_module_belongs_to_a_ring():
    loose = [name for name in _modules() if name not in ("distill",) and _package(name) is None]
    assert not loose, f"modules outside every ring of RINGS (put them in a subpackage): {loose}"


def test_imports_point_only_to_lower_rings():
    modules = _modules()
    upward = []
    for module, path in modules.items():
        own = _package(module)
        if own is None:
            continue
        for name in _imports(path, module):
            target = _package(name)
            if target is None or target == own:
                continue
            if RINGS[target] >= RINGS[own]:
                upward.append(f"{module} imports {name} ({own} ring {RINGS[own]} -> {target} ring {RINGS[target]})")
    assert not upward, "imports that do not point to a lower ring:\n" + "\n".join(sorted(upward))


def test_no_import_cycles_between_modules():
    modules = _modules()
    graph = {module: {name for name in _imports(path, module, top_level_only=True) if name in modules and name != module}
             for module, path in modules.items()}
    state: dict[str, str] = {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for name in graph[module]:
            if state.get(name) == "open":
                pytest.fail("import cycle: " + " -> ".join(trail[trail.index(name):] + [name]))
            if name not in state:
                visit(name, trail + [name])
        state[module] = "done"

    for module in graph:
        if module not in state:
            visit(module, [module])


def test_modules_are_small_and_named_once():
    paths = [path for path in LIBRARY.rglob("*.py")]
    long = {str(path.relative_to(ROOT)): count for path in paths if (count := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"
    seen: dict[str, Path] = {}
    twice = []
    for path in paths:
        if path.name == "__init__.py":
            continue
        if path.name in seen:
            twice.append(f"{seen[path.name].relative_to(ROOT)} and {path.relative_to(ROOT)}")
        seen[path.name] = path
    assert not twice, f"modules sharing a name: {twice}"


def test_readme_layout_names_every_subpackage():
    readme = (ROOT / "README.md").read_text()
    section = re.search(r"^## Layout\n(.*?)(?=^## )", readme, flags=re.S | re.M)
    assert section, "README.md has no '## Layout' section"
    subpackages = sorted(path.parent.name for path in LIBRARY.glob("*/__init__.py"))
    missing = [name for name in subpackages if f"`{name}/`" not in section.group(1)]
    assert not missing, f"README.md's Layout section does not name distill/ subpackages {missing}"
