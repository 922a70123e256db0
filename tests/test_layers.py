"""The package's layering holds: core <- search <- report <- workflow, and no import circles within a layer.

import-linter reads its contracts from pyproject.toml ([tool.importlinter]); its graph counts the imports inside
functions too, so a lazy import cannot hide an arrow."""
import re
import shutil
import sys

from conftest import ROOT


def lint(root) -> bool:
    """import-linter's verdict on the package under `root`, with the contracts of root/pyproject.toml."""
    from importlinter.application.use_cases import lint_imports
    from importlinter.configuration import configure

    configure()  # what its command line does first: the readers of pyproject.toml and the contract types
    return lint_imports(config_filename=str(root / "pyproject.toml"), cache_dir=None, no_logo=True)


def test_the_layers_and_their_contracts_hold() -> None:
    assert lint(ROOT) is True


def test_a_broken_layer_would_be_caught(tmp_path, monkeypatch, capsys) -> None:
    """The contracts are not vacuous: in a copy of the package where core imports report, they fail."""
    shutil.copytree(ROOT / "archsearch", tmp_path / "archsearch")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "archsearch" / "core" / "records.py").write_text("from archsearch.report import rows\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m == "archsearch" or m.startswith("archsearch.")]:
        monkeypatch.delitem(sys.modules, name)
    assert lint(tmp_path) is False
    report = capsys.readouterr().out
    assert "(lower never imports higher) BROKEN" in report
    assert "archsearch.core.records -> archsearch.report.rows" in report


ENTRY_SCRIPTS = {"run.py", "review.py", "confirm.py", "main.py", "evaluate.py", "summary.py", "results.py"}


def test_sweep_holds_only_the_entry_scripts_and_none_shadows_a_module() -> None:
    """`python sweep/run.py` puts sweep/ first on sys.path: a module there would hide any library's of its name."""
    import importlib.metadata

    scripts = {p.name for p in (ROOT / "sweep").iterdir() if p.suffix == ".py"}
    assert scripts == ENTRY_SCRIPTS
    assert not [p for p in (ROOT / "sweep").iterdir() if p.is_dir() and p.name != "__pycache__"]
    taken = set(sys.stdlib_module_names) | set(importlib.metadata.packages_distributions())
    assert not {name[:-3] for name in scripts} & taken  # no module of the standard library or of an installed one
    for name in sorted(scripts):
        assert len((ROOT / "sweep" / name).read_text().splitlines()) <= 20, f"sweep/{name} should stay a few lines"


def test_no_module_edits_sys_path() -> None:
    sources = [*(ROOT / "archsearch").rglob("*.py"), *(ROOT / "sweep").glob("*.py"), *(ROOT / "bench").glob("*.py"),
               *(ROOT / "hydra_plugins").rglob("*.py")]
    edits = re.compile(r"sys\.path\s*(=|\[|\.(insert|append|extend|remove|pop|clear))")
    assert not [str(p) for p in sources if edits.search(p.read_text())]
