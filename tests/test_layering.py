"""Tests that the packages' layers point down (issue 21).

`puzzles` and `equilibrium` import nothing of `recursive_models` or `leaderboard`, and `recursive_models`
nothing of `leaderboard`. Run: ``python -m pytest tests/test_layering.py``. The import checks run in a fresh
interpreter (this test process has long since imported everything), every submodule of the two bottom packages
included, one interpreter per package so the test stays fast; a second check reads every import statement of
the sources, so imports inside functions are caught too.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# package -> the packages above it, which it must not import
LAYERS = {
    "puzzles": ("recursive_models", "leaderboard"),
    "equilibrium": ("recursive_models", "leaderboard"),
    "recursive_models": ("leaderboard",),
}

# Imports `pkg` (and, for walk=True, every submodule), then reports who pulled in a forbidden module.
_PROBE = """
import importlib, json, pkgutil, sys
pkg, above, walk = sys.argv[1], tuple(sys.argv[2].split(",")), sys.argv[3] == "1"
names = [pkg]
if walk:
    mod = importlib.import_module(pkg)
    names += [m.name for m in pkgutil.walk_packages(mod.__path__, pkg + ".")]
bad = {}
for name in names:
    before = set(sys.modules)
    importlib.import_module(name)
    hits = sorted(m for m in set(sys.modules) - before if m.split(".")[0] in above)
    if hits:
        bad[name] = hits[:3]
print(json.dumps(bad))
"""


def _forbidden_imports(pkg: str, walk: bool) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, pkg, ",".join(LAYERS[pkg]), "1" if walk else "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


# The bottom packages with every submodule (the package itself first); recursive_models as `import` loads it.
@pytest.mark.parametrize(("pkg", "walk"), [("puzzles", True), ("equilibrium", True), ("recursive_models", False)])
def test_importing_a_package_loads_nothing_above_it(pkg: str, walk: bool) -> None:
    # Submodules are imported one after another in one interpreter, so a module is blamed for what it adds.
    assert _forbidden_imports(pkg, walk=walk) == {}


def test_the_model_agent_is_registered_by_name_not_imported() -> None:
    from puzzles.agents import agent_class
    from recursive_models.agents import ModelAgent

    assert agent_class("model") is ModelAgent


def _imports_in_source(pkg: str) -> list[str]:
    """``file:line module`` for every import statement of ``pkg``'s sources naming a package above it."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / pkg
    hits = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            where = f"{path.relative_to(root.parent)}:{node.lineno}"
            hits += [f"{where} {n}" for n in names if n.split(".")[0] in LAYERS[pkg]]
    return hits


@pytest.mark.parametrize("pkg", sorted(LAYERS))
def test_no_import_statement_points_up(pkg: str) -> None:
    # Also the imports inside functions, which importing the modules above never runs.
    assert _imports_in_source(pkg) == []


#: the training paths a reader follows from a CLI to a checkpoint (issue 21: each function fits on a screen)
RECIPE_FILES = ("recipe.py", "trainer.py", "cli.py", "train.py", "lm/trainer.py", "lm/train.py")
MAX_FUNCTION_LINES = 80


def test_both_trainers_are_one_recipe_and_no_function_on_their_path_is_long() -> None:
    import ast
    from pathlib import Path

    from recursive_models.lm.trainer import LMRecipe
    from recursive_models.recipe import Recipe
    from recursive_models.trainer import PuzzleRecipe

    assert issubclass(PuzzleRecipe, Recipe) and issubclass(LMRecipe, Recipe)
    # the loop, the checkpoint/resume and the budgets are the base's, not overridden by either recipe
    for name in ("run", "setup", "train", "train_step", "after_step", "save", "resume", "budget_spent", "finish"):
        assert name not in vars(PuzzleRecipe) and name not in vars(LMRecipe), name
    root = Path(__file__).resolve().parents[1] / "recursive_models"
    long = []
    for rel in RECIPE_FILES:
        for node in ast.walk(ast.parse((root / rel).read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{rel}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long
