"""pyproject.toml declares what the code imports, and no more is needed than a fresh install gives."""
from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

from conftest import ROOT

OURS = {"archsearch", "hydra_plugins.archsearch_sweeper"}
# Installed by the Makefile in a step of its own (its optuna<3 pin is stale: README, "Dependencies").
SECOND_STEP = {"hydra-optuna-sweeper"}


def declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = [*project["dependencies"], *(d for extra in project["optional-dependencies"].values() for d in extra)]
    return {re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0].lower() for spec in specs}


def our_code() -> list[Path]:
    return [*(ROOT / "archsearch").rglob("*.py"), *(ROOT / "sweep").rglob("*.py"),
            *(ROOT / "hydra_plugins").rglob("*.py")]


def imported_modules() -> dict[str, set[str]]:
    """Top-level module (hydra_plugins: its subpackage) -> the files that import it."""
    found: dict[str, set[str]] = {}
    for path in our_code():
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
            for name in names:
                parts = name.split(".")
                top = ".".join(parts[:2]) if parts[0] == "hydra_plugins" else parts[0]
                found.setdefault(top, set()).add(path.relative_to(ROOT).as_posix())
    return found


def test_every_imported_distribution_is_declared() -> None:
    distributions = importlib.metadata.packages_distributions()
    missing = {}
    for module, files in imported_modules().items():
        if module in OURS or module.split(".")[0] in sys.stdlib_module_names or module == "__future__":
            continue
        dists = {d.lower() for d in distributions.get(module.split(".")[-1] if "." in module else module, [])}
        if module.startswith("hydra_plugins."):
            dists = {module.split(".")[1].replace("_", "-")}
        if not dists & (declared() | SECOND_STEP):
            missing[module] = (sorted(dists), sorted(files))
    assert not missing, missing


def test_the_importance_plot_needs_scikit_learn_and_it_is_declared() -> None:
    # Optuna's MeanDecreaseImpurityImportanceEvaluator (archsearch/report/plots.py) imports scikit-learn itself; an install
    # that lacked it would fail there, with no import of ours to show it.
    assert "MeanDecreaseImpurityImportanceEvaluator" in (ROOT / "archsearch" / "report" / "plots.py").read_text()
    assert "scikit-learn" in declared()


# The standard library's additions that the code uses, with the Python that brought them.
NEWER_STDLIB = {"hashlib.file_digest": (3, 11), "tomllib": (3, 11), "typing.Self": (3, 11), "itertools.batched": (3, 12)}


def test_requires_python_is_the_oldest_python_the_code_runs_on() -> None:
    needed: dict[tuple[int, int], str] = {}
    for path in our_code():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                names = [f"{node.value.id}.{node.attr}"]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                names = [f"{node.module}.{a.name}" for a in node.names] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                if name in NEWER_STDLIB:
                    needed.setdefault(NEWER_STDLIB[name], f"{name} in {path.relative_to(ROOT)}")
    oldest = max(needed)
    spec = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert spec == f">={oldest[0]}.{oldest[1]}", needed[oldest]
    assert sys.version_info >= oldest
