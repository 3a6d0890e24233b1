"""The house in rooms (README, "Architecture"): one package per stage of the flow, no import circle
(not even through an import inside a function), imports inside functions only to defer an optional
package or keep the CLI fast, every package shipped and held by the import contract. `lint-imports`
(CI) checks the floors themselves; these tests check what the contract cannot see."""
from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import gpucomp
from gpucomp._shared import sources
from gpucomp.outdir import ray_run

PACKAGE = Path(gpucomp.__file__).resolve().parent
PYPROJECT = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())
OPTIONAL = {"cupy", "cupyx", "pynvml", "numba", "ray", "av"}  # extras or fallbacks: imported where used
FAST_START = {"cli.py", "__init__.py"}  # `gpucomp --help` and `import gpucomp` load nothing they do not need
MAX_MODULE_LINES = 600
MAX_PACKAGE_MODULES = 12


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(mod: str, path: Path, node: ast.Import | ast.ImportFrom, known: dict) -> list[str]:
    """The gpucomp modules an import statement names (the deepest known module of each name; the
    parent packages Python loads on the way hold only docstrings, and the API's lazy wrappers)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            pkg = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
            base = ".".join(pkg[:len(pkg) - node.level + 1] + ([node.module] if node.module else []))
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
    out = []
    for name in names:
        parts = name.split(".")
        deepest = next((".".join(parts[:k]) for k in range(len(parts), 0, -1) if ".".join(parts[:k]) in known), None)
        out += [deepest] if deepest and deepest != mod else []
    return out


def import_graph() -> dict[str, set[str]]:
    known = modules()
    graph: dict[str, set[str]] = {m: set() for m in known}
    for mod, path in known.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                graph[mod].update(imported(mod, path, node, known))
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return path[path.index(n):] + [n]
            if n not in state and (cycle := visit(n)):
                return cycle
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (cycle := visit(m)):
            return cycle
    return None


def test_package_inits_hold_only_their_docstring():
    """So that importing any module loads nothing but its own imports (the API's __init__ aside)."""
    heavy = [m for m, p in modules().items() if p.name == "__init__.py" and m != "gpucomp"
             and any(not isinstance(n, ast.Expr) for n in ast.parse(p.read_text()).body)]
    assert not heavy, f"package __init__ files with code: {heavy}"


def test_no_import_circle_even_through_imports_inside_functions():
    graph = import_graph()
    assert len(graph) > 50  # the whole package was read
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def function_level_imports():
    for path in modules().values():
        tree = ast.parse(path.read_text())
        lines = path.read_text().splitlines()
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    if isinstance(node, (ast.Import, ast.ImportFrom)):
                        root = (node.module if isinstance(node, ast.ImportFrom) else node.names[0].name) or ""
                        yield path, node.lineno, root.split(".")[0], lines[node.end_lineno - 1]


def test_imports_inside_functions_only_defer_optional_packages_or_keep_the_cli_fast():
    found = list(function_level_imports())
    assert any(root == "cupy" for _, _, root, _ in found)  # the walk sees them
    wrong = [f"{p.relative_to(PACKAGE.parent)}:{n}: {line.strip()}" for p, n, root, line in found
             if not (root in OPTIONAL or p.name in FAST_START)]
    assert not wrong, "an import inside a function that defers nothing optional (move it to the top):\n" + "\n".join(wrong)


def test_every_deferred_import_says_why():
    silent = [f"{p.relative_to(PACKAGE.parent)}:{n}: {line.strip()}" for p, n, _, line in function_level_imports()
              if "deferred" not in line]
    assert not silent, "a deferred import needs a comment saying what it defers:\n" + "\n".join(silent)


def packages() -> set[str]:
    return {module_name(p) for p in PACKAGE.rglob("__init__.py")}


def test_every_package_is_shipped_in_the_wheel():
    shipped = set(PYPROJECT["tool"]["setuptools"]["packages"])
    assert packages() <= shipped, f"add to [tool.setuptools] packages: {sorted(packages() - shipped)}"
    assert "gpucomp._kernels" in shipped and "gpucomp.publish.gallery_assets" in shipped


def test_every_room_stands_on_a_floor_of_the_import_contract():
    layers = next(c for c in PYPROJECT["tool"]["importlinter"]["contracts"] if c["type"] == "layers")["layers"]
    named = {f"gpucomp.{room.strip()}" for floor in layers for room in floor.split("|")}
    rooms = {m for m in modules() if m.count(".") == 1} - {"gpucomp.__init__"}
    assert rooms - named == set(), f"add to the layers contract in pyproject.toml: {sorted(rooms - named)}"
    assert named - rooms == set()


def test_rooms_stay_small_and_say_what_they_are():
    known = modules()
    long = {m: n for m, p in known.items() if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split them by job): {long}"
    per_package = {pkg: sum(1 for m in known if m.rpartition(".")[0] == pkg) for pkg in packages() - {"gpucomp"}}
    crowded = {pkg: n for pkg, n in per_package.items() if n > MAX_PACKAGE_MODULES}
    assert not crowded, f"packages over {MAX_PACKAGE_MODULES} modules: {crowded}"
    undocumented = [m for m, p in known.items() if not ast.get_docstring(ast.parse(p.read_text()))
                    and p.name != "__main__.py"]
    assert not undocumented, f"modules without a docstring saying their job: {undocumented}"


def test_a_checkout_finds_its_own_kernel_sources_and_ray_workers_its_own_package():
    """`benchmarks/gpu_check.sh` runs from a checkout with PYTHONPATH=. and no install: the .cu files
    must come from the checkout's kernels/, and Ray's local workers must import this gpucomp."""
    for name in ("composite.cu", "deflate.cu"):
        assert (sources.CHECKOUT_KERNELS / name).is_file()
        assert sources.kernel_source(name) == (sources.CHECKOUT_KERNELS / name).read_text()
    assert (ray_run.SOURCE_ROOT / "gpucomp" / "__init__.py").resolve() == Path(gpucomp.__file__).resolve()


def test_the_api_names_resolve_to_their_rooms_functions_on_first_use():
    import importlib

    for name, module in gpucomp.API.items():
        assert getattr(gpucomp, name) is getattr(importlib.import_module(module), name)
        assert callable(getattr(gpucomp, name)) and name in dir(gpucomp) and name in gpucomp.__all__
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        gpucomp.nothing  # noqa: B018


def test_importing_the_package_or_the_cli_loads_no_room():
    code = ("import sys, gpucomp, gpucomp.cli; "
            "print(sorted(m for m in sys.modules if m.startswith('gpucomp.') "
            "and m not in ('gpucomp._version', 'gpucomp.cli')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=PACKAGE.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_private_name_stays_in_its_module():
    """`_name` is a module's own business; a name another module needs is public (and documented)."""
    crossing = [f"{p.relative_to(PACKAGE.parent)}:{node.lineno}: {a.name}"
                for p in modules().values() for node in ast.walk(ast.parse(p.read_text()))
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gpucomp")
                for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
    assert not crossing, "private names imported from another module:\n" + "\n".join(crossing)
