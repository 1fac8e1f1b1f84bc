"""Notebooks stay thin: no control flow beyond figure layout; artifact names come from RunLayout.

The rule, kept simple: a notebook code cell may not contain ``if``, ``for``, ``while``, ``try``,
``def`` or ``class`` statements, except an ``if``/``for`` whose every statement is a call on a
figure object (``fig``, ``ax``, ``axes``, ``plt``, ``fig2``...), e.g. ``for ax in axes:
ax.set_xticks([])``. Expressions (comprehensions, ``a if c else b``) are allowed.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
_FLOW = (ast.If, ast.For, ast.AsyncFor, ast.While, ast.Try, ast.FunctionDef, ast.AsyncFunctionDef,
         ast.ClassDef, ast.Lambda)
_FIGURE = re.compile(r"^(fig\d*|ax\w*|axes|plt)$")


def code_cells(path: Path) -> list[str]:
    """The code cells of a jupytext py:percent notebook (markdown cells and the header dropped)."""
    cells, current = [], None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# %%"):
            if current is not None:
                cells.append("\n".join(current))
            current = None if "[markdown]" in line else []
        elif current is not None:
            current.append(line)
    if current is not None:
        cells.append("\n".join(current))
    return cells


def _root_name(node: ast.AST) -> str | None:
    while isinstance(node, ast.Attribute | ast.Call | ast.Subscript):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _figure_layout(node: ast.AST) -> bool:
    """An ``if``/``for`` whose body only calls methods of figure objects."""
    if not isinstance(node, ast.If | ast.For):
        return False
    body = node.body + node.orelse
    return all(isinstance(s, ast.Expr) and isinstance(s.value, ast.Call)
               and _FIGURE.match(_root_name(s.value.func) or "") for s in body)


def control_flow(path: Path) -> list[str]:
    """``line: statement`` of every forbidden statement in the notebook's code cells."""
    found = []
    for i, cell in enumerate(code_cells(path)):
        for node in ast.walk(ast.parse(cell)):
            if isinstance(node, _FLOW) and not _figure_layout(node):
                found.append(f"cell {i}, line {node.lineno}: {type(node).__name__.lower()}")
    return found


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_has_no_control_flow(nb):
    assert control_flow(nb) == [], f"{nb.name}: move the logic into lcgee"


def test_the_rule_catches_control_flow(tmp_path):
    nb = tmp_path / "99_x.py"
    nb.write_text("# %% [markdown]\n# if this is prose\n\n# %%\nfor ax in axes:\n    ax.set_xticks([])\n"
                  "if world:\n    fig.suptitle('demo')\n\n# %%\nfor name in names:\n    print(name)\n"
                  "x = [a for a in b if a]\n\n# %%\ndef f():\n    return 1\n")
    assert control_flow(nb) == ["cell 1, line 1: for", "cell 2, line 1: functiondef"]


#: The run directory's artifact names: only lcgee/layout.py spells them.
ARTIFACTS = ("scenes.parquet", "duplicates.json", "mask_quality.json", "mask_sources.json",
             "features.tif", "count.tif", "labels.tif", "samples.parquet", "samples.json",
             "metrics.json", "confusion.png", "difference.png", "landcover.tif", "landcover.json",
             "ee_classifier.json", "ee_graph.json", "holdout.parquet", "water_probability.tif",
             "water.tif", "water.json", "ee-tiles", ".stages", "run.json", "params.yaml")
_SPELLED = re.compile("|".join([r"""["'/]""" + re.escape(a) + r"""["']""" for a in ARTIFACTS]
                               + [r"""(/\s*|folder\(|path\()["'](masks|model)["']"""]))


def spelled_artifacts(text: str) -> list[str]:
    return [m.group(0) for m in _SPELLED.finditer(text)]


def test_only_the_layout_spells_artifact_names():
    sources = [*ROOT.glob("lcgee/**/*.py"), *NOTEBOOKS]
    found = {}
    for path in sources:
        rel = path.relative_to(ROOT).as_posix()
        if rel == "lcgee/layout.py" or rel.startswith("lcgee/demo/"):
            continue
        hits = spelled_artifacts(path.read_text(encoding="utf-8"))
        if hits:
            found[rel] = hits
    assert found == {}, "ask lcgee.layout.RunLayout for these paths"
    layout = (ROOT / "lcgee/layout.py").read_text(encoding="utf-8")
    assert all(f'"{a}"' in layout for a in ARTIFACTS)


def test_the_artifact_check_sees_the_spellings():
    assert spelled_artifacts('run_dir / "features.tif"; stage.folder("model"); x / "masks"') == [
        '"features.tif"', 'folder("model"', '/ "masks"']
    assert spelled_artifacts('meta["model"] = 1  # the ``features.tif`` stack') == []


def test_library_code_never_builds_a_stage():
    """Only ``open_stage`` builds a notebook ``Stage``; library code takes a RunLayout instead."""
    builders = []
    for path in ROOT.glob("lcgee/**/*.py"):
        rel = path.relative_to(ROOT).as_posix()
        if rel == "lcgee/stage.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and _root_name(node.func) == "Stage":
                builders.append(f"{rel}:{node.lineno}")
    assert builders == []
