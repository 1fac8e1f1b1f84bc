"""The import layering of the package, read from the source with ``ast`` (nothing is imported).

* :mod:`lcgee.gee` is a lower layer: its modules import only each other and the low-level
  modules named in its package docstring (:data:`GEE_MAY_IMPORT`), never a stage module;
* the module-level imports of lcgee's modules form no cycle;
* ``ee`` (earthengine-api) is imported by :mod:`lcgee.gee.api` alone;
* an import of an lcgee module inside a function is listed in :data:`IN_FUNCTION` with its
  reason (an optional extra it needs, or a heavy dependency kept off the import path).
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path

import lcgee.gee

PACKAGE = Path(__file__).resolve().parents[2] / "lcgee"

#: Modules outside lcgee/gee/ that lcgee.gee may import: pure types and functions with no
#: knowledge of runs (each imports only lcgee.errors / lcgee.files).
GEE_MAY_IMPORT = {"lcgee.errors", "lcgee.files", "lcgee.grid", "lcgee.indices", "lcgee.clouds",
                  "lcgee.scenes", "lcgee.water", "lcgee.composite"}

_CLI = ("CLI: a subcommand's heavy stage (LightGBM, Earth Engine, JAX, the doctor's readers) "
        "loads only when it runs, so `lcgee --help` starts in well under a second")
_DEMO = ("the demo world's generator and servers (scipy, rasterio, planetary-computer: ~0.5-0.8 s) "
         "load only on demo runs; `import lcgee` and the CLI do not pay for them")
_NUMBA = "numba compiles the fast predictor (~0.8 s to import); LightGBM's own predict if missing"

#: (importing module, imported module) -> reason, for imports of lcgee modules inside functions.
#: Compared exactly: a new one must be added here with its reason, a removed one taken out.
#: Each such import also carries a comment on its line in the source
#: (:func:`test_in_function_imports_carry_a_comment`).
IN_FUNCTION = {
    ("lcgee.cli", "lcgee.demo.serve"): _CLI,
    ("lcgee.cli", "lcgee.demo.world"): _CLI,
    ("lcgee.cli", "lcgee.doctor"): _CLI,
    ("lcgee.cli", "lcgee.ee_stage"): _CLI,
    ("lcgee.cli", "lcgee.search"): _CLI,
    ("lcgee.cli", "lcgee.train_stage"): _CLI,
    ("lcgee.cli", "lcgee.water_stage"): _CLI,
    ("lcgee.predict", "lcgee.fastpredict"): _NUMBA,
    ("lcgee.run", "lcgee.demo.serve"): _DEMO,
    ("lcgee.run", "lcgee.demo.world"): _DEMO,
    ("lcgee.stage", "lcgee.demo.serve"): _DEMO,
    ("lcgee.stage", "lcgee.demo.world"): _DEMO,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(node: ast.Import | ast.ImportFrom, here: str) -> list[str]:
    """The modules an import statement names (``from pkg import mod`` -> ``pkg.mod``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = here.rsplit(".", node.level)[0]
        base = f"{package}.{base}" if base else package
    out = []
    for alias in node.names:
        full = f"{base}.{alias.name}"
        out.append(full if full in MODULES else base)
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(name: str) -> tuple[list[str], list[str]]:
    """(module-level imports, imports inside functions) of one module; TYPE_CHECKING skipped."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    top: list[str] = []
    inner: list[str] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                (inner if in_function else top).extend(_resolve(child, name))
            visit(child, in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef
                                                   | ast.Lambda))

    visit(tree, False)
    return top, inner


IMPORTS = {name: _imports(name) for name in MODULES}


def _own(names: list[str]) -> list[str]:
    return [n for n in names if n == "lcgee" or n.startswith("lcgee.")]


def test_the_scan_sees_known_imports():
    # Guards the scanner itself: a resolver that saw nothing would pass every test below.
    top, _ = IMPORTS["lcgee.gee.classify"]
    assert "lcgee.gee.trees" in top and "lcgee.indices" in top
    assert "lcgee.gee.api" in IMPORTS["lcgee.gee.session"][0]
    _, inner = IMPORTS["lcgee.cli"]
    assert inner, "lcgee.cli imports its subcommands inside functions"


def test_gee_imports_no_stage_module():
    bad = {}
    for name, (top, inner) in IMPORTS.items():
        if not name.startswith("lcgee.gee"):
            continue
        wrong = sorted({m for m in _own(top + inner)
                        if not m.startswith("lcgee.gee") and m not in GEE_MAY_IMPORT})
        if wrong:
            bad[name] = wrong
    assert not bad, f"lcgee.gee reaches up into stage modules: {bad}"


def test_gee_docstring_states_the_rule():
    doc = lcgee.gee.__doc__ or ""
    for name in GEE_MAY_IMPORT:
        assert f"``{name}``" in doc, f"{name} is allowed but not named in lcgee.gee's docstring"
    assert "``ee``" in doc and "lcgee.gee.api" in doc


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := dfs(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := dfs(node)):
            return found
    return None


def test_no_import_cycles_among_lcgee_modules():
    graph = {name: {m for m in _own(top) if m in MODULES and m != name}
             for name, (top, _) in IMPORTS.items()}
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph) or [])}"


def test_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_ee_is_imported_in_one_module():
    users = sorted(name for name, (top, inner) in IMPORTS.items()
                   if any(m == "ee" or m.startswith("ee.") for m in top + inner))
    assert users == [], f"import ee outside lcgee.gee.api: {users}"
    dynamic = sorted(name for name, path in MODULES.items() if name != "lcgee.gee.api"
                     and re.search(r"""import_module\(\s*f?["']ee\b|require\(\s*["']ee["']""",
                                   path.read_text(encoding="utf-8")))
    assert dynamic == [], f"ee imported dynamically outside lcgee.gee.api: {dynamic}"


def test_in_function_imports_of_lcgee_are_listed():
    found = Counter((name, m) for name, (_, inner) in IMPORTS.items() for m in _own(inner))
    unlisted = sorted(set(found) - set(IN_FUNCTION))
    assert not unlisted, ("imports of lcgee modules inside functions without a reason "
                          f"(move them to the top, or list them in IN_FUNCTION): {unlisted}")
    stale = sorted(set(IN_FUNCTION) - set(found))
    assert not stale, f"IN_FUNCTION lists imports that are gone: {stale}"


def _in_function_import_lines(name: str) -> list[tuple[int, str]]:
    """(line number, source line) of each import of an lcgee module inside a function."""
    path = MODULES[name]
    lines = path.read_text(encoding="utf-8").splitlines()
    out = []
    for func in ast.walk(ast.parse("\n".join(lines))):
        if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(func):
            if isinstance(node, ast.Import | ast.ImportFrom) and _own(_resolve(node, name)):
                out.append((node.lineno, lines[node.lineno - 1]))
    return out


def test_in_function_imports_carry_a_comment():
    """The reason of :data:`IN_FUNCTION` is also said where the import is (``# ...``)."""
    bare = [f"{name}:{n}: {line.strip()}" for name in MODULES
            for n, line in _in_function_import_lines(name) if "#" not in line]
    assert not bare, "in-function imports of lcgee modules without a comment:\n" + "\n".join(bare)


def test_comment_check_sees_in_function_imports():
    assert any("fastpredict" in line for _, line in _in_function_import_lines("lcgee.predict"))


def test_install_hints_name_real_extras():
    """Every ``require(module, extra)`` names an extra of pyproject.toml (there is no ``gee``
    extra: earthengine-api is a core dependency, reached through lcgee.gee.api)."""
    import tomllib

    pyproject = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text(encoding="utf-8"))
    extras = set(pyproject["project"]["optional-dependencies"])
    named = set()
    for path in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id == "require" and len(node.args) == 2
                    and isinstance(node.args[1], ast.Constant)):
                named.add(node.args[1].value)
    assert named and named <= extras, f"install hints name missing extras: {named - extras}"
    assert not any("lcgee[gee]" in p.read_text(encoding="utf-8") for p in MODULES.values())


def test_missing_earthengine_api_says_how_to_repair(monkeypatch):
    import importlib

    from lcgee.errors import MissingDependencyError
    from lcgee.gee import api

    def missing(name):
        raise ImportError(f"No module named {name!r}")

    monkeypatch.setattr(importlib, "import_module", missing)
    try:
        api.ee()
    except MissingDependencyError as exc:
        assert "earthengine-api" in str(exc) and "lcgee[" not in str(exc)
    else:
        raise AssertionError("no error for a missing earthengine-api")
